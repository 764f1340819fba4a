"""Watching the sensors: credential-error incidents, re-checks after a change, password expiry warnings.

The jobs are driven by `bot.monitor.scheduler`; what they find reaches the operator through a `Notifier`
(Slack implements it). See docs/monitor.md.
"""
