"""The wire, with no HTTP in it: codecs (JSON, YAML, protobuf), patch, server-side apply, OpenAPI
schemas, field checks, selectors and the durations kubectl prints."""
