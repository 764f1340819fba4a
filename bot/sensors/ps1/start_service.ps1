# atp-bot start service v1: Start-Service and report the state it reached.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$p = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('__ATP_BOT_PARAMS__')) | ConvertFrom-Json
$out = [ordered]@{ name = $p.service; before = $null; after = $null; error = $null }
$svc = Get-Service -Name $p.service -ErrorAction SilentlyContinue
if ($null -eq $svc) { $out.error = 'not installed' }
else {
  $out.before = $svc.Status.ToString()
  try {
    Start-Service -Name $p.service
    try { $svc.WaitForStatus('Running', [TimeSpan]::FromSeconds([double]$p.wait_seconds)) } catch { }
  } catch { $out.error = $_.Exception.Message }
  $svc.Refresh(); $out.after = $svc.Status.ToString()
}
# ASCII-only JSON (\uXXXX escapes), whatever the console code page does to the output.
[regex]::Replace(($out | ConvertTo-Json -Compress), '[^\x00-\x7F]', { param($m) '\u{0:x4}' -f [int][char]$m.Value })
