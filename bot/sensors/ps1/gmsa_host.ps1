# atp-bot gMSA host check v1: may this computer use the gMSA, and may a service log on with it?
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$p = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('__ATP_BOT_PARAMS__')) | ConvertFrom-Json
$out = [ordered]@{ test_ad_service_account = $null; test_error = $null; service_logon = $null; policy_error = $null
  classic_sensor = $false; unified_sensor = $false }
# Which sensor runs here: the classic sensor's service (uses the DSA), the unified sensor's process (does not).
$out.classic_sensor = [bool](Get-Service -Name AATPSensor -ErrorAction SilentlyContinue)
$out.unified_sensor = [bool](Get-Process -Name SenseIdentity -ErrorAction SilentlyContinue)
try {
  Import-Module ActiveDirectory
  $out.test_ad_service_account = [bool](Test-ADServiceAccount -Identity $p.identity -WarningAction SilentlyContinue)
} catch { $out.test_error = $_.Exception.Message }
# The effective "Log on as a service" right (SeServiceLogonRight), as the local security policy exports it.
$cfg = [IO.Path]::GetTempFileName()
try {
  $null = secedit.exe /export /areas USER_RIGHTS /cfg $cfg /quiet
  $line = Select-String -Path $cfg -Pattern '^SeServiceLogonRight\s*=' | Select-Object -First 1
  $out.service_logon = @()
  if ($line) { $out.service_logon = @(($line.Line -split '=', 2)[1].Split(',') | ForEach-Object { $_.Trim() }) }
} catch { $out.policy_error = $_.Exception.Message }
finally { Remove-Item -LiteralPath $cfg -Force -ErrorAction SilentlyContinue }
# ASCII-only JSON (\uXXXX escapes), whatever the console code page does to the output.
[regex]::Replace(($out | ConvertTo-Json -Compress), '[^\x00-\x7F]', { param($m) '\u{0:x4}' -f [int][char]$m.Value })
