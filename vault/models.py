# Storage tiers arrive with issues 5 and 6.
