"""The bus protocol of the twin (twin.v1): subjects, control messages, codec; see proto/README.md."""
