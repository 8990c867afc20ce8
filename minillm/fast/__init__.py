"""The speed wing: thread pool, fused and tiled kernels, CUDA kernels, allocator and BLAS choices."""
