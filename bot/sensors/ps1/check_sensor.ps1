# atp-bot sensor check v1: service states and credential errors in the sensor's error log.
# Parameters arrive as one base64 JSON block; nothing from the configuration is spliced into code.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$p = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('__ATP_BOT_PARAMS__')) | ConvertFrom-Json
$utf8 = New-Object Text.UTF8Encoding($false)
$inv = [Globalization.CultureInfo]::InvariantCulture
function Join-Bytes([byte[]]$a, [byte[]]$b) {
  $c = New-Object byte[] ($a.Length + $b.Length)
  [Array]::Copy($a, 0, $c, 0, $a.Length); [Array]::Copy($b, 0, $c, $a.Length, $b.Length); return ,$c
}
function Get-Slice([byte[]]$a, [int]$start, [int]$len) {
  $c = New-Object byte[] $len; [Array]::Copy($a, $start, $c, 0, $len); return ,$c
}
function Get-Size([string]$path) { return (Get-Item -LiteralPath $path).Length }
function Read-Bytes([string]$path, [long]$start, [int]$count) {
  $fs = [IO.File]::Open($path, 'Open', 'Read', [IO.FileShare]'ReadWrite, Delete')
  try {
    [void]$fs.Seek($start, 'Begin'); $buf = New-Object byte[] $count; $got = 0
    while ($got -lt $count) { $k = $fs.Read($buf, $got, $count - $got); if ($k -le 0) { break }; $got += $k }
    $script:read += $got
    return ,(Get-Slice $buf 0 $got)
  } finally { $fs.Dispose() }
}
function Get-FileId([string]$path, [long]$n) {
  $n = [Math]::Min($n, (Get-Size $path))
  $sha = [Security.Cryptography.SHA256]::Create()
  $h = [BitConverter]::ToString($sha.ComputeHash((Read-Bytes $path 0 $n))).Replace('-', '').ToLower()
  return ('{0}:{1}' -f $n, $h.Substring(0, 32))
}
$r = @{ hits = 0; first = $null; last = $null; sample = $null; pending = 0; pendingSample = $null; stop = $false }
function Test-Hit([string]$line) {
  foreach ($pat in $p.patterns) { if ($line.IndexOf($pat, [StringComparison]::Ordinal) -ge 0) { return $true } }
  return $false
}
function Get-Stamp([string]$line) {
  if ($line -match '^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?') { return $Matches[0] }
  return $null
}
function Add-Hit($stamp, [string]$line, [bool]$forward) {
  $r.hits += 1
  if ($forward) { if ($r.hits -eq 1) { $r.first = $stamp }; $r.last = $stamp; $r.sample = $line }
  else { if ($r.hits -eq 1) { $r.last = $stamp; $r.sample = $line }; $r.first = $stamp }
}
function Scan-Forward([string]$path, [long]$start) {
  $size = Get-Size $path
  if ($size - $start -gt $script:budget) { $start = $size - $script:budget; $script:complete = $false }
  $pos = $start; $carry = New-Object byte[] 0; $stamp = $null
  while ($pos -lt $size) {
    $n = [int][Math]::Min([long]$p.chunk, $size - $pos)
    $buf = Join-Bytes $carry (Read-Bytes $path $pos $n); $pos += $n; $script:budget -= $n
    $cut = [Array]::LastIndexOf($buf, [byte]10)
    if ($cut -lt 0) { $carry = $buf; continue }
    $carry = Get-Slice $buf ($cut + 1) ($buf.Length - $cut - 1)
    foreach ($raw in $utf8.GetString($buf, 0, $cut).Split([char]10)) {
      $line = $raw.TrimEnd([char]13); $s = Get-Stamp $line; if ($s) { $stamp = $s }
      if (Test-Hit $line) { Add-Hit $stamp $line $true }
    }
  }
  return $size - $carry.Length
}
function Scan-Back([string]$path, [datetime]$since) {
  $size = Get-Size $path
  $pos = $size; $carry = New-Object byte[] 0; $end = -1
  while ($pos -gt 0 -and -not $r.stop) {
    if ($script:budget -le 0) { $script:complete = $false; break }
    $n = [int][Math]::Min([Math]::Min([long]$p.chunk, $pos), $script:budget)
    $pos -= $n; $buf = Join-Bytes (Read-Bytes $path $pos $n) $carry; $script:budget -= $n; $carry = New-Object byte[] 0
    if ($end -lt 0) {
      $cut = [Array]::LastIndexOf($buf, [byte]10)
      if ($cut -lt 0) { $carry = $buf; continue }
      $end = $pos + $cut + 1; $buf = Get-Slice $buf 0 $cut
    }
    if ($pos -gt 0) {
      $nl = [Array]::IndexOf($buf, [byte]10)
      if ($nl -lt 0) { $carry = $buf; continue }
      $carry = Get-Slice $buf 0 $nl; $buf = Get-Slice $buf ($nl + 1) ($buf.Length - $nl - 1)
    }
    $lines = $utf8.GetString($buf).Split([char]10)
    for ($i = $lines.Length - 1; $i -ge 0; $i--) {
      $line = $lines[$i].TrimEnd([char]13); $s = Get-Stamp $line; $hit = Test-Hit $line
      if ($null -eq $s) { if ($hit) { $r.pending += 1; if ($null -eq $r.pendingSample) { $r.pendingSample = $line } }; continue }
      if ([datetime]::Parse($s, $inv) -lt $since) { $r.stop = $true; $r.pending = 0; break }
      if ($hit -or $r.pending -gt 0) {
        $sample = $(if ($null -ne $r.pendingSample) { $r.pendingSample } else { $line })
        Add-Hit $s $sample $false; $r.hits += $r.pending + [int]$hit - 1
      }
      $r.pending = 0; $r.pendingSample = $null
    }
  }
  if ($end -lt 0) { $end = $size - $carry.Length }
  return $end
}
$out = [ordered]@{ services = @(); sense_identity = $false; log = $null; log_error = $null }
foreach ($name in $p.services) {
  $svc = Get-Service -Name $name -ErrorAction SilentlyContinue
  $out.services += [ordered]@{ name = $name; state = $(if ($svc) { $svc.Status.ToString() } else { $null }) }
}
# The unified sensor (3.x) has no service of its own; Microsoft's module recognises it by this process.
$out.sense_identity = [bool](Get-Process -Name SenseIdentity -ErrorAction SilentlyContinue)
try {
  # The classic sensor's logs: beside the binary its service runs (the current version folder), or where
  # SensorCustomLogLocation in SensorConfiguration.json beside it says; else the configured folder.
  $logDir = $p.log_dir
  if ($p.binary_service) {
    $svcInfo = Get-CimInstance -ClassName Win32_Service -ErrorAction SilentlyContinue | Where-Object { $_.Name -eq $p.binary_service } | Select-Object -First 1
    if ($svcInfo -and $svcInfo.PathName) {
      $exe = $svcInfo.PathName.Trim()
      if ($exe.StartsWith('"')) { $exe = $exe.Substring(1, $exe.IndexOf('"', 1) - 1) }
      $binDir = Split-Path -Parent $exe
      $logDir = Join-Path $binDir 'Logs'
      $cfg = Join-Path $binDir 'SensorConfiguration.json'
      if (Test-Path -LiteralPath $cfg -PathType Leaf) {
        $custom = (Get-Content -LiteralPath $cfg -Raw | ConvertFrom-Json).SensorCustomLogLocation
        if ($custom) { $logDir = [string]$custom }
      }
    }
  }
  $dirs = @(Resolve-Path -Path $logDir -ErrorAction SilentlyContinue | ForEach-Object { $_.ProviderPath })
  $cands = @($dirs | ForEach-Object { Join-Path $_ $p.error_log } | Where-Object { Test-Path -LiteralPath $_ -PathType Leaf })
  if ($cands.Count -eq 0) { throw ('error log not found: ' + (Join-Path $logDir $p.error_log)) }
  $cur = $cands | Sort-Object { (Get-Item -LiteralPath $_).LastWriteTimeUtc } | Select-Object -Last 1
  $stem = [IO.Path]::GetFileNameWithoutExtension($p.error_log)
  $script:read = 0; $script:budget = [long]$p.max_bytes; $script:complete = $true; $rotated = $false; $reset = $false
  if ($null -ne $p.position) {
    $want = [string]$p.position.file_id; $n = [long]$want.Split(':')[0]; $off = [long]$p.position.offset
    if ((Get-FileId $cur $n) -eq $want -and (Get-Size $cur) -ge $off) { $end = Scan-Forward $cur $off }
    else {
      $old = @([string]$p.position.path) + @(Get-ChildItem -LiteralPath (Split-Path $cur) -Filter ($stem + '*') -File | ForEach-Object { $_.FullName })
      $old = $old | Where-Object { $_ -ne $cur -and (Test-Path -LiteralPath $_ -PathType Leaf) } |
        Where-Object { (Get-FileId $_ $n) -eq $want } | Select-Object -First 1
      if ($old) {
        $rotated = $true; [void](Scan-Forward $old $off)
        # Rolled over more than once: the archives written after the old file, oldest first, in full.
        $oldTime = (Get-Item -LiteralPath $old).LastWriteTimeUtc
        Get-ChildItem -LiteralPath (Split-Path $cur) -Filter ($stem + '*') -File |
          Where-Object { $_.FullName -ne $cur -and $_.FullName -ne $old -and $_.LastWriteTimeUtc -gt $oldTime } |
          Sort-Object LastWriteTimeUtc | ForEach-Object { [void](Scan-Forward $_.FullName 0) }
      } else { $reset = $true }
      $end = Scan-Forward $cur 0
    }
  } else {
    # PowerShell 7's ConvertFrom-Json already turns ISO 8601 strings into DateTime; 5.1 does not.
    if ($p.since -is [datetime]) { $since = $p.since.ToUniversalTime() }
    else { $since = [datetime]::Parse([string]$p.since, $inv, [Globalization.DateTimeStyles]'AdjustToUniversal') }
    $end = Scan-Back $cur $since
    if (-not $r.stop -and $script:complete) {
      $arch = Get-ChildItem -LiteralPath (Split-Path $cur) -Filter ($stem + '*') -File | Where-Object { $_.FullName -ne $cur } |
        Sort-Object LastWriteTimeUtc | Select-Object -Last 1
      if ($arch) { [void](Scan-Back $arch.FullName $since) }
    }
    if ($r.pending -gt 0) { Add-Hit $null $r.pendingSample $false; $r.hits += $r.pending - 1 }
  }
  $out.log = [ordered]@{ path = $cur; file_id = (Get-FileId $cur $p.head); offset = [long]$end; size = (Get-Size $cur)
    bytes_read = [long]$script:read; matches = $r.hits; first = $r.first; last = $r.last; sample = $r.sample
    rotated = $rotated; reset = $reset; complete = $script:complete }
} catch { $out.log_error = $_.Exception.Message }
# ASCII-only JSON (\uXXXX escapes), whatever the console code page does to the output.
[regex]::Replace(($out | ConvertTo-Json -Compress -Depth 5), '[^\x00-\x7F]', { param($m) '\u{0:x4}' -f [int][char]$m.Value })
