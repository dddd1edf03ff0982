# syntax=docker/dockerfile:1
#
# The trainer image: `python -m trainer.task` on an NVIDIA GPU with TensorFlow 2.21.
#
#   docker build -t lstm-composer-trainer .                     (Cloud Build: cloudbuild.yaml)
#   docker run --rm --gpus all lstm-composer-trainer ...        (job flags go straight to trainer.task)
#   docker run --rm --gpus all --entrypoint python lstm-composer-trainer -m trainer.gpu_check   (run first)
#
# Why this base. TensorFlow 2.21 is built against CUDA 12.5 and cuDNN 9 (tf.sysconfig.get_build_info();
# its `and-cuda` extra asks for nvidia-cudnn-cu12>=9.3.0.75, nvidia-cublas-cu12>=12.5.3.2, ...):
#   * Vertex AI's prebuilt TensorFlow training containers stop at 2.17, so this is a custom container.
#   * tensorflow/tensorflow:2.21.0-gpu is reported to ship a cuDNN that does not match the one the wheel
#     was compiled with ("Loaded runtime CuDNN library ... but source was compiled with ..."), and
#     an nvidia/cuda:*-cudnn base would bring a second, system-wide CUDA/cuDNN whose versions we
#     would have to keep in step with TensorFlow's by hand.
#   * So: a plain Python image and the CUDA libraries as the pip wheels TensorFlow itself declares
#     (`tensorflow[and-cuda]`), pinned below to exactly the versions its `and-cuda` extra names as
#     minimums (the set TensorFlow's CI builds and tests with; unpinned, pip would take the newest
#     12.x / 9.x, which nobody tested with TF 2.21). The GPU driver (libcuda.so.1) never belongs in
#     the image: the NVIDIA container runtime mounts the host's (Vertex AI; `docker run --gpus`), GKE
#     mounts it under /usr/local/nvidia.
#   * The known trap of `tensorflow[and-cuda]` on a plain image: TensorFlow finds the CUDA libraries
#     through the RUNPATH of its own .so files, which lists only some site-packages/nvidia/*/lib
#     folders (in 2.21 none names nvidia/curand/lib, and only libtensorflow_cc names cusolver; a
#     RUNPATH serves only dlopen calls made from that same .so). Checked here with the pinned wheels:
#     with just the RUNPATH folders on the path, libcurand.so.10 and libcusolver.so.11 do not load,
#     which is TF's "Cannot dlopen some GPU libraries ... Skipping registering GPU devices". Every
#     site-packages/nvidia/*/lib folder is therefore registered with the dynamic loader
#     (ld.so.conf.d + ldconfig, so it holds whatever the job's environment is), and the build proves
#     it with `python -m trainer.gpu_check --libraries-only` (loads each library by soname, as TF
#     does, and checks cuDNN's own version against TensorFlow's; no GPU or driver needed).
#   * LD_LIBRARY_PATH adds /usr/local/nvidia/lib64, where GKE mounts the driver; ptxas and libdevice
#     (nvidia-cuda-nvcc-cu12) are put where XLA looks for them, in case a model is jit-compiled.
FROM python:3.11.14-slim-bookworm AS trainer

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    TF_CPP_MIN_LOG_LEVEL=2

# Layer 1, dependencies only (cached until these pins change): TensorFlow with its CUDA wheels, and
# the rest of the package's base + `train` requirements from setup.py, all pinned
# (tests/test_cloud_docker.py checks these pins against setup.py and TensorFlow's own metadata),
# and muspy of the `eval` extra, so that the trainer's TensorBoard samples carry the music measures.
# No Apache Beam and no google-cloud-aiplatform: the trainer never imports either.
RUN python -m pip install --no-cache-dir \
        "tensorflow[and-cuda]==2.21.0" \
        "nvidia-cublas-cu12==12.5.3.2" \
        "nvidia-cuda-cupti-cu12==12.5.82" \
        "nvidia-cuda-nvcc-cu12==12.5.82" \
        "nvidia-cuda-nvrtc-cu12==12.5.82" \
        "nvidia-cuda-runtime-cu12==12.5.82" \
        "nvidia-cudnn-cu12==9.3.0.75" \
        "nvidia-cufft-cu12==11.2.3.61" \
        "nvidia-curand-cu12==10.3.6.82" \
        "nvidia-cusolver-cu12==11.6.3.83" \
        "nvidia-cusparse-cu12==12.5.1.3" \
        "nvidia-nccl-cu12==2.27.7" \
        "nvidia-nvjitlink-cu12==12.5.82" \
        "keras==3.15.1" \
        "tensorboard==2.21.0" \
        "matplotlib==3.11.2" \
        "muspy==0.5.0" \
        "music21==10.5.1" \
        "miditok==3.1.0" \
        "symusic==0.6.0" \
        "numpy==2.4.6" \
        "protobuf==6.33.6"

# Register every site-packages/nvidia/*/lib folder with the loader (see above), and print them.
# The wheel ships ptxas as mode 744 (owner root only): let the non-root user below run it too.
RUN python -c "import glob, sysconfig; dirs = sorted(glob.glob(sysconfig.get_paths()['purelib'] + '/nvidia/*/lib')); open('/etc/ld.so.conf.d/zz-tensorflow-nvidia-wheels.conf', 'w').write(''.join(d + chr(10) for d in dirs)); print(*dirs, sep=chr(10))" \
    && ldconfig \
    && chmod a+rx /usr/local/lib/python3.11/site-packages/nvidia/cuda_nvcc/bin/ptxas

ENV LD_LIBRARY_PATH=/usr/local/nvidia/lib64:/usr/local/nvidia/lib \
    PATH=/usr/local/nvidia/bin:/usr/local/lib/python3.11/site-packages/nvidia/cuda_nvcc/bin:${PATH} \
    XLA_FLAGS=--xla_gpu_cuda_data_dir=/usr/local/lib/python3.11/site-packages/nvidia/cuda_nvcc

# A non-root user that owns only its home (checkpoints and logs go to gs:// or /gcs/...).
RUN useradd --create-home --uid 1000 --user-group --shell /usr/sbin/nologin composer

# Layer 2, the code: the package with its `train` extra (already satisfied above, so pip adds only
# lstm-composer itself; it would fail here rather than pull Beam or a different TensorFlow).
# cloud/ (job submission, google-cloud-aiplatform) is not copied: it runs on the user's machine.
WORKDIR /opt/lstm-composer
COPY setup.py README.md ./
COPY lstm_composer/ lstm_composer/
COPY preprocessing/ preprocessing/
COPY trainer/ trainer/
# DL3013 (pin versions in pip) does not apply: "." is this repository's own package, not a download,
# and every requirement it has is pinned in layer 1.
# hadolint ignore=DL3013
RUN python -m pip install --no-cache-dir ".[train]" \
    && python -c "import importlib.util as u, sys; sys.exit(1 if u.find_spec('apache_beam') else 0)"

# Numeric, so that Kubernetes' runAsNonRoot can verify it (uid 1000 is the user "composer" made above).
USER 1000:1000
WORKDIR /home/composer

# Fails the build unless every CUDA library loads by soname and cuDNN's version fits TensorFlow's.
RUN python -m trainer.gpu_check --libraries-only

ENTRYPOINT ["python", "-m", "trainer.task"]
CMD ["--help"]
