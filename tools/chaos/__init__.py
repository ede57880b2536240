"""`make chaos`: faults injected into the real stack, with figures.

Private PostgreSQL, Redis (append-only file, as `make run` keeps it), Azurite (the vault), the vCenter
simulator with VMs whose disks hold real ext4 and NTFS file systems, and real `manage.py rqworker`
processes on a fresh DATA_DIR. The product is driven through its own actions (add a vCenter, protect,
back up, cancel, delete) and measured with its own checks (the store's and the vault's hash-checked
chunk reads, `vault.verify`, vCenter's snapshot list), never with assumptions:

    python -m tools.chaos [--quick] [--seed N] [--only SCENARIO ...] [--vault azurite|directory]

Modules: `stack` starts and breaks the servers and workers; `measure` settles the product (reaper,
start-up jobs, catch-up replication, as a worker start and cron would) and counts what was lost;
`lab` sets the product up and holds what scenarios share; `scenarios` holds one function per fault;
`__main__` runs them and prints the table.
"""
