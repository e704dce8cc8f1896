"""The integration test bed: real registries (plain, basic, token, TLS), a token server, a
fault-injecting reverse proxy, and wrappers for skopeo, oci-image-tool and promtool."""
