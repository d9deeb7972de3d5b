"""Generated code of proto/lynkr/admin/v1/admin.proto; rebuild with scripts/gen_proto.sh."""
