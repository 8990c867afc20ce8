"""The autograd engine: the array backend, Tensor and its ops, gradient checking, optimizers."""
