"""Alerts: an instance over its RPO, a failed backup, and their recoveries.

``evaluate`` opens and resolves alerts and notifies them; ``channels`` sends
by email and webhook; ``digest`` sends the daily summary. ``config`` only
checks settings and imports no models: ``dashboard.settings`` uses it.
"""
