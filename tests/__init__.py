"""lockgate's test suite and its harness (a real PostgreSQL and Kubernetes control plane)."""
