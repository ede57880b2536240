# Protection groups and policies arrive with issue 4.
