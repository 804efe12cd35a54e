# A GPU worker: @tensorflow/tfjs-node-gpu 4.22 links libtensorflow 2.9, built against CUDA 11.2
# and cuDNN 8.1; the CUDA 11.8 / cuDNN 8 runtime below is ABI-compatible with it. Run one
# container per GPU (the compose file pins each to a device), or one container with the launcher.
FROM nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gnupg python3 make g++ \
 && curl -fsSL https://deb.nodesource.com/setup_20.x | bash - \
 && apt-get install -y --no-install-recommends nodejs \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# With optional dependencies: tfjs-node-gpu downloads libtensorflow (GPU build) here.
RUN npm ci --no-audit --no-fund
COPY tsconfig.json .swcrc ./
COPY bin ./bin
COPY libs ./libs
COPY apps ./apps
# ice-core picks the fastest backend that loads; force the native one so a broken CUDA setup fails loudly.
ENV ICE_TF_BACKEND=tensorflow
CMD ["node", "bin/run-ts.js", "apps/worker/src/main.ts"]
