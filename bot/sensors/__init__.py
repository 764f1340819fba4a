"""Sensors over WinRM: targets, the PowerShell templates (ps1/), the runner, the fan-out, shared checks."""
