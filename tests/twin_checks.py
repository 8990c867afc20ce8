"""What the tests that hold two forms of an op equal (plain and fast, one thread and several) share."""
import numpy

from minillm.engine.tensor import Tensor


def value_and_grads(fn, *inputs):
    """fn's output and the gradient of every input, under a fixed random weighting of the output.

    Weighting by random numbers (not a plain sum) makes every output entry's gradient count,
    so two forms that agree here agree on the whole Jacobian-vector product.
    """
    for t in inputs:
        t.grad = None
    out = fn(*inputs)
    weights = numpy.random.default_rng(1).standard_normal(out.shape).astype(out.dtype)
    (out * Tensor(weights)).sum().backward()
    return [out.numpy()] + [t.grad.copy() for t in inputs]
