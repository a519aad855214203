"""1:N search: galleries of enrolled identities."""
