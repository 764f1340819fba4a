"""The local lab: protocol-accurate peers for atp-bot's tests and for trying the bot locally.

A Samba AD DC driver, a WinRM (WS-Management) emulator and a Slack emulator. The product (`bot`,
`commands`) never imports this package; the lab plugs `atp-bot lab …` in through an entry point.
"""
