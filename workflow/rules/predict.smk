# Apply a trained model to new videos: `snakemake predict --config predict='{videos: my_clips/}'`.
# One job per video (faces, ConvNet and temporal windows, streamed), then the tables of all
# videos. Not part of `all`; the default model is this workflow's attention LSTM.


rule predict_video:
    input:
        video=get_predict_video,
        model=get_predict_model,
    output:
        frames=f"{RESULTS}/predict/{{name}}/frames.parquet",
        windows=f"{RESULTS}/predict/{{name}}/windows.parquet",
        summary=f"{RESULTS}/predict/{{name}}/summary.json",
        timeline=f"{RESULTS}/predict/{{name}}/timeline.png",
    log:
        f"{RESULTS}/logs/predict/{{name}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/predict/{{name}}.tsv"
    wildcard_constraints:
        name=r"[^/]+",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
        gres=get_gpu_request,
    params:
        cpu_kernels=config["cpu_kernels"],
        predict=get_predict_params,
        device=config["device"],
    script:
        "../scripts/predict_video.py"


rule predict:
    input:
        frames=predicted_frames,
        windows=predicted_windows,
    output:
        all_frames=f"{RESULTS}/predict/frames.parquet",
        all_windows=f"{RESULTS}/predict/windows.parquet",
    log:
        f"{RESULTS}/logs/predict.log",
    benchmark:
        f"{RESULTS}/benchmarks/predict.tsv"
    conda:
        "../../envs/ml.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        cpu_kernels=config["cpu_kernels"],
    script:
        "../scripts/predict.py"
