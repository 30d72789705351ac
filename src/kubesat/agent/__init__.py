"""The node agent: kubesat's kubelet side (volumes, the atomic writer, token refresh), a client of the API server."""
