"""The Users pages (administrators), My account and the password change (everyone signed in)."""
