"""kubesat: the Kubernetes service-account token system as a standalone server."""

__version__ = "0.1.0"
