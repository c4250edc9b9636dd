"""Every form of arbook, one module per page family (the floor above selectors, below views).

- `credentials`: the admin's gateway credential form.
- `espay`: the Espay batch upload.
- `aging`: the aging report's options.
- `syncs`: the sync-run list's filters.
"""
