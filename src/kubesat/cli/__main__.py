"""`python -m kubesat.cli`: the `kubesat` command."""

from kubesat.cli import main

main()
