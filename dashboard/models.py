# The overview reads other apps' models; it has none of its own.
