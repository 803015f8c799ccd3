// Helpers for rule text.
{
  // A text block as one line (as YAML's folded `>-` would make it).
  oneLine(s):: std.join(' ', std.filter(function(l) l != '', std.split(s, '\n'))),

  // A Prometheus duration in words: '5m' -> '5 minutes', '1h' -> 'an hour',
  // '1m' -> 'a minute', '30s' -> '30 seconds'.
  words(d)::
    local n = std.parseInt(std.substr(d, 0, std.length(d) - 1));
    local u = { s: 'second', m: 'minute', h: 'hour', d: 'day' }[d[std.length(d) - 1]];
    if n == 1 then (if u == 'hour' then 'an hour' else 'a ' + u)
    else '%d %ss' % [n, u],

  // Seconds in words, in the largest whole unit: 300 -> '5 minutes'.
  secondsWords(s)::
    if s % 3600 == 0 then self.words('%dh' % (s / 3600))
    else if s % 60 == 0 then self.words('%dm' % (s / 60))
    else self.words('%ds' % s),
}
