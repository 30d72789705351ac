"""CEL for Kubernetes: CRD x-kubernetes-validations now, webhook matchConditions and ValidatingAdmissionPolicy next."""

from kubesat.apimachinery.cel.authz import authorizer_value
from kubesat.apimachinery.cel.decltype import DeclType, decl_type
from kubesat.apimachinery.cel.engine import DYN, CompileError, Compiled, Env, compile_expression, evaluate
from kubesat.apimachinery.cel.library import CelError
from kubesat.apimachinery.cel.rules import rule_errors, runtime_cost, validate_rules

__all__ = [
    "DYN", "CelError", "CompileError", "Compiled", "DeclType", "Env", "authorizer_value", "compile_expression",
    "decl_type", "evaluate", "rule_errors", "runtime_cost", "validate_rules",
]
