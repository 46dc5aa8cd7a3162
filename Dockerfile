# segzoo on NVIDIA GPUs: CUDA runtime base, Rust toolchain, the full torch 2.11.0 wheel
# (CUDA 13 libraries, NCCL) in /opt/segzoo/.venv, OpenMPI from apt, release binaries on PATH.
#   docker build -t segzoo .
#   docker run --gpus all --rm segzoo segzoo env
#   docker run --gpus all --rm --ipc=host -v $PWD/data:/opt/segzoo/data segzoo \
#     segzoo-launch --rank-table rank_tables/hccl_8p.json --server-id 127.0.0.1 -- \
#     segzoo train --config configs/hrnetv2_w48_cityscapes.toml --resume auto
# CUDA 13 needs an NVIDIA driver of 580 or newer on the host. For a CUDA 12.x driver
# (docs/installation.md#docker):
#   docker build --build-arg CUDA_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu22.04 \
#     --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 -t segzoo:cu128 .
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-runtime-ubuntu22.04
FROM ${CUDA_IMAGE}
# Empty: torch from PyPI (CUDA 13); else PyTorch's index of another CUDA (scripts/setup.sh).
ARG TORCH_INDEX=

ENV DEBIAN_FRONTEND=noninteractive
# Build tools for the C shim and mpi-sys; python3-venv for setup.sh's .venv. setup.sh
# installs the rest itself: OpenMPI, libclang 14, fonts and gloo's headers (libgloo-dev)
# from apt; with SEGZOO_TORCH=cuda, the full torch wheel and the nvidia-cuda-crt and
# nvidia-cuda-cccl header wheels the NCCL part of the shim compiles against.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential ca-certificates curl git pkg-config \
      python3 python3-venv python3-pip \
 && rm -rf /var/lib/apt/lists/*

ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:$PATH
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain 1.95.0 \
      --component rustfmt,clippy

WORKDIR /opt/segzoo
COPY . .
# No GPU is visible while building: ask for the CUDA flavour explicitly.
RUN SEGZOO_TORCH=cuda SEGZOO_TORCH_INDEX="${TORCH_INDEX}" scripts/setup.sh \
 && cargo build --release --workspace \
 && rm -rf target/release/build target/release/deps target/release/incremental \
 && rm -rf /var/lib/apt/lists/*

ENV PATH=/opt/segzoo/target/release:$PATH
# mpirun as root inside the container.
ENV OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
CMD ["segzoo", "env"]
