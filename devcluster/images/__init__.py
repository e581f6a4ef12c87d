"""The container images the dev cluster's real node runs, built here: nothing is pulled from the internet.

`build_images()` returns docker-archive tarballs, each holding one image under its ref (the cluster
pushes them to its registry, `devcluster.registry`):

- pause: containerd's sandbox image, Kubernetes' own pause.c (from the Go module cache) compiled statically;
- lockgate: the repository's Dockerfile, built for real with buildah;
- the shop sample app (examples/shop/app), on top of lockgate;
- the tool examples, on top of lockgate: Django (examples/django) and Alembic (examples/alembic), pip-installed
  during the build; Flyway (examples/flyway), Debian's Java 17 apt-installed and hack/fetch-flyway.sh's jars.

The Dockerfile's base, python:3.11-slim-bookworm, is pulled where a registry answers; otherwise an
equivalent is made with mmdebstrap from the host's Debian mirrors. Every archive is named for a sha256
of what it is built from, so a warm cache builds nothing and a change rebuilds only what depends on it.
The base's key is its recipe, not its packages' versions: remove the cache to pick up Debian's updates.
buildah keeps its store (images, layers, containers) under the cache directory; only what buildah 1.28
has no flag to move lands outside: its blob-info cache (/var/lib/containers/cache) and empty network
directories (/etc/containers/networks, /etc/cni/net.d, /run/containers/networks). Building needs root,
buildah, mmdebstrap (unless the base can be pulled), gcc and go; a warm cache needs only go.

The modules, in the order a build uses them: `recipes` (the refs and what each image is built from,
pure), `inputs` (those inputs read from disk), `targets` (`build_images()`: what to build, in
dependency order, and the archives), `builds` (how each image is made), `buildah` (the I/O shell:
processes, buildah on the cache's store, the cache lock).

    python -m devcluster.images [--cache DIR]   # one "ref archive" line per image on stdout
"""
