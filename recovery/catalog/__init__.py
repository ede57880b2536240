"""The file catalog: every file and folder of every browsable volume of a VM's recovery points, so
search and "other versions" read the database instead of opening points.

A path is one `CatalogPath` row (what search matches); each distinct version of it (size, modified
time, owner, folder or file) is one `CatalogVersion` row valid over a range of the VM's catalogued
points (`CatalogPoint.seq`): a point that changes nothing adds no rows, a changed file closes its old
version and opens a new one (as Proxmox Backup's catalog and Veeam's guest index keep one entry per
version, not per backup).

- `writer.catalogue_point(point, listings)`: the one writer; a listing's entries come from a
  generator (the walk of a real file system, `walk.point_listings`, or a benchmark's synthetic one).
- `jobs`: `recovery.catalog_vm` (queued after each backup) and `recovery.catalog_backfill`.
- `receivers`: a deleted point's versions are narrowed or removed in the delete's transaction.
- `search`: name, glob and path-fragment search over the VMs a user may restore from, with versions.
"""
