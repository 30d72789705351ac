"""Custom resource schemas: the CRD-time checks, validation, pruning and defaulting of OpenAPI v3 structural schemas."""
