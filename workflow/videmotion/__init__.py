"""videmotion: video emotion recognition with an attention LSTM over ConvNet face features.

A reproduction of Zheng, "Video Emotion Recognition Based on Attention Mechanism LSTM
Model": faces are extracted from each clip (Viola-Jones, MTCNN fallback), an AlexNet-like
ConvNet pretrained on FER2013 turns each face into a per-frame feature, and a peephole
LSTM or an attention LSTM classifies the sequence. Random forests on LBP-TOP are the
baselines. The Snakemake workflow at the repository root wires these stages together;
this package holds all of their logic.
"""

__version__ = "0.1.0"
