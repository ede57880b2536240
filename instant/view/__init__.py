"""A recovery point served as a datastore folder (plain Python, no Django, like vault.engine).

    source.py   the point's chunks (local store, then vault) through a shared cache of decoded
                chunks; the up-front refusal of a point with archived or missing chunks
    layout.py   the folder's names and text files: NAME.vmdk descriptors, the VM's .vmx
    overlay.py  each disk's writes (redirect on write, 4 KiB blocks, crash-consistent)
    fs.py       the FUSE file system (mfusepy) joining them
    serve.py    `python -m instant.view.serve`: mount, serve until SIGTERM, unmount

The rules the product relies on: a served point's chunks are only ever read (writes land in the
overlay directory, never in the store); an overlay is consistent after a crash at any moment
(a block's data is durable before the bit that names it); and a point that could not be read whole
is refused before anything is mounted.
"""
