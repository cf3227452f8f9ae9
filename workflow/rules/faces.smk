# Faces: Viola-Jones per frame with MTCNN as the fallback, 100x100 crops into one HDF5
# face store per shard of clips, and a QC table that accounts for every clip.


rule extract_faces:
    input:
        clips=f"{RESULTS}/data/clips.csv",
    output:
        store=f"{RESULTS}/faces/shard_{{shard}}.h5",
        qc=f"{RESULTS}/faces/qc_shard_{{shard}}.parquet",
    log:
        f"{RESULTS}/logs/extract_faces/shard_{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/extract_faces/shard_{{shard}}.tsv"
    conda:
        "../../envs/faces.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        cpu_kernels=config["cpu_kernels"],
        shards=config["shards"],
        faces=get_face_params,
        device=config["device"],
    script:
        "../scripts/extract_faces.py"


rule face_qc:
    input:
        clips=f"{RESULTS}/data/clips.csv",
        shard_qc=expand(f"{RESULTS}/faces/qc_shard_{{shard}}.parquet", shard=SHARDS),
    output:
        qc=f"{RESULTS}/qc/faces.parquet",
        summary=report(
            f"{RESULTS}/qc/faces_summary.tsv",
            caption="../report/face_qc.rst",
            category="Quality control",
        ),
    log:
        f"{RESULTS}/logs/face_qc.log",
    benchmark:
        f"{RESULTS}/benchmarks/face_qc.tsv"
    conda:
        "../../envs/faces.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        cpu_kernels=config["cpu_kernels"],
        max_excluded_fraction=config["faces"]["max_excluded_fraction"],
    script:
        "../scripts/face_qc.py"
