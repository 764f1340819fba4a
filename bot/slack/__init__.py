"""The Slack face of atp-bot: a Bolt app with one slash command, `/atp`, routed to the feature modules
that the composition root (`bot/cli/run.py`) hands in; the framework itself never imports `commands`.

`bot.slack.runtime.SlackRuntime` builds and runs it (Socket Mode or HTTP); `bot.slack.app.build_app`
builds the Bolt app alone.
"""
