"""The one bound on walking a schema and an object together: nesting depth and the number of steps."""

from __future__ import annotations

from kubesat import limits


class TooMuchWork(Exception):
    """A schema or object nests deeper, or needs more steps, than kubesat allows."""


class Budget:
    """Counts the steps of one walk; every recursive walk in crdschema charges it once per node."""

    __slots__ = ("left",)

    def __init__(self, steps: int = limits.MAX_SCHEMA_STEPS) -> None:
        self.left = steps

    def charge(self, steps: int) -> None:
        """Count work that is not one node, such as copying a default of that many nodes."""
        self.left -= steps
        if self.left < 0:
            raise TooMuchWork()

    def step(self, depth: int) -> None:
        self.left -= 1
        if self.left < 0 or depth > limits.MAX_DEPTH:
            raise TooMuchWork()
