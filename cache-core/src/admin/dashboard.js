
(function () {
  'use strict';
  // Every value shown comes from the guarded JSON endpoints next to this page and is inserted with
  // textContent or as an SVG attribute: nothing from the server is ever parsed as HTML.
  var SVG = document.getElementById('svg-ns').namespaceURI;
  // The admin root: this page is `<root>/dashboard`.
  var root = location.pathname.replace(/\/dashboard\/?$/, '');
  var TOKEN_KEY = 'annocache-admin-token';
  var WINDOW_KEY = 'annocache-window';
  var MAX_CHARTS = 12;
  var token = '';
  var win = '5m';
  var rendered = false;
  var timer = null;
  var lastRefresh = 0;

  function $(id) { return document.getElementById(id); }
  function store(key, value) {
    try { if (value === null) { sessionStorage.removeItem(key); } else { sessionStorage.setItem(key, value); } } catch (e) { /* storage off */ }
  }
  function load(key) {
    try { return sessionStorage.getItem(key); } catch (e) { return null; }
  }
  function endpoint(path) { return root + '/' + path; }
  function node(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function svg(tag, attrs) {
    var e = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, String(attrs[k])); });
    return e;
  }
  function clear(e) { while (e.firstChild) { e.removeChild(e.firstChild); } return e; }
  function num(v, digits) {
    if (v === null || v === undefined || typeof v !== 'number' || !isFinite(v)) { return '–'; }
    return v.toLocaleString('en-US', { maximumFractionDigits: digits === undefined ? 0 : digits });
  }
  function ms(v) {
    if (typeof v !== 'number') { return '–'; }
    return num(v, v < 10 ? 2 : v < 100 ? 1 : 0);
  }
  function pct(v) { return typeof v === 'number' ? num(v * 100, 1) + ' %' : '–'; }
  function bytes(v) {
    if (typeof v !== 'number') { return '–'; }
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    var i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return num(v, i === 0 ? 0 : 1) + ' ' + units[i];
  }
  // Local HH:MM, with the weekday for the day window (its ends are 24 hours apart).
  function clock(msSinceEpoch) {
    var d = new Date(msSinceEpoch);
    var two = function (n) { return (n < 10 ? '0' : '') + n; };
    var day = win === '1d' ? ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'][d.getDay()] + ' ' : '';
    return day + two(d.getHours()) + ':' + two(d.getMinutes());
  }
  // A rate: two significant digits below 0.1, so a quiet route over a day is not "0".
  function rate(v) {
    if (typeof v !== 'number') { return '–'; }
    return v > 0 && v < 0.1 ? String(Number(v.toPrecision(2))) : num(v, 2);
  }
  function setStatus(text) { $('status').textContent = text; }
  function showError(text) {
    var e = $('error');
    e.textContent = text;
    e.hidden = !text;
  }

  // One call to the admin API: {status, body} (body: parsed JSON, or null).
  function api(method, path, body) {
    var headers = { 'Accept': 'application/json' };
    if (token) { headers.Authorization = 'Bearer ' + token; }
    var init = { method: method, headers: headers, credentials: 'same-origin', cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (resp) {
      return resp.text().then(function (text) {
        var json = null;
        try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
        return { status: resp.status, body: json };
      });
    });
  }

  // ---------------------------------------------------------------- stats
  function renderStats(reply, analytics) {
    var dl = clear($('stats'));
    var s = reply.body || {};
    var c = s.counters || {};
    var rec = (analytics && analytics.status === 200 && analytics.body) ? analytics.body.recorder : null;
    var items = [
      ['backend', s.backend],
      ['health', s.health && s.health.status],
      ['keys', num(s.total_keys)],
      ['memory', s.memory_used_human],
      ['engine hits', num(c.hits)],
      ['engine misses', num(c.misses)],
      ['server hit rate', typeof s.hit_rate_percent === 'number' ? num(s.hit_rate_percent, 2) + ' %' : '–'],
      ['clients', num(s.connected_clients)]
    ];
    if (rec) {
      items.push(['events recorded', num(rec.accepted)]);
      items.push(['events dropped', num(rec.dropped)]);
    }
    items.forEach(function (kv) {
      var d = node('div');
      d.appendChild(node('dt', null, kv[0]));
      d.appendChild(node('dd', null, kv[1] === undefined || kv[1] === null ? '–' : kv[1]));
      dl.appendChild(d);
    });
  }

  // ---------------------------------------------------------------- routes table
  function routeCell(method, route) {
    var td = node('td');
    td.appendChild(node('span', 'method', method));
    td.appendChild(document.createTextNode(' ' + route));
    return td;
  }
  function renderRoutes(reply) {
    var body = $('routes').tBodies[0];
    clear(body);
    var note = $('routes-note');
    $('routes-window').textContent = '(' + win + ')';
    if (reply.status !== 200 || !reply.body || !Array.isArray(reply.body.routes)) {
      note.textContent = 'route analytics unavailable (HTTP ' + reply.status + ')';
      return;
    }
    var routes = reply.body.routes;
    note.textContent = routes.length ? '' : 'no requests recorded in this window';
    routes.forEach(function (r) {
      var tr = node('tr', 'route');
      var lat = r.latency || {};
      tr.appendChild(routeCell(r.method, r.route));
      [num(r.requests), rate(r.per_second), pct(r.hit_rate), ms(lat.p50_ms), ms(lat.p95_ms),
        ms(lat.p99_ms), bytes(r.bytes_total), pct(r.error_rate)].forEach(function (v) {
        tr.appendChild(node('td', null, v));
      });
      body.appendChild(tr);
    });
  }

  // ---------------------------------------------------------------- charts
  var W = 400;
  var H = 70;
  function y(v, max) { return H - 2 - (v / max) * (H - 6); }
  // The centre of bucket i of n: bars, lines and marks line up.
  function cx(i, n) { return ((i + 0.5) * W) / n; }
  function tip(e, text) {
    var t = svg('title');
    t.textContent = text;
    e.appendChild(t);
    return e;
  }
  function linePath(points, key, max) {
    var n = points.length;
    var d = '';
    var pen = false;
    points.forEach(function (p, i) {
      var v = p[key];
      if (typeof v !== 'number') { pen = false; return; }
      d += (pen ? 'L' : 'M') + cx(i, n).toFixed(1) + ' ' + y(v, max).toFixed(1);
      pen = true;
    });
    return d;
  }
  function figure(caption, right) {
    var f = node('figure');
    var c = node('figcaption');
    c.appendChild(node('span', null, caption));
    c.appendChild(right);
    f.appendChild(c);
    var s = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, preserveAspectRatio: 'none', class: 'chart', role: 'img', 'aria-label': caption });
    s.appendChild(svg('line', { x1: 0, y1: H - 2, x2: W, y2: H - 2, class: 'axis' }));
    f.appendChild(s);
    return { fig: f, svg: s };
  }
  // One line per series; a point without a neighbour (a line needs two) is a short dash.
  function lines(s, points, series, max, fmt) {
    var n = points.length;
    var half = Math.max(W / n * 0.3, 2);
    series.forEach(function (k) {
      var cls = k.replace('_ms', '').replace('_rate', '');
      var d = linePath(points, k, max);
      if (d) { s.appendChild(svg('path', { d: d, class: 'line s-' + cls })); }
      points.forEach(function (p, i) {
        var v = p[k];
        if (typeof v !== 'number') { return; }
        var prev = i > 0 ? points[i - 1][k] : null;
        var next = i < n - 1 ? points[i + 1][k] : null;
        var x = cx(i, n);
        var yy = y(v, max).toFixed(1);
        var mark = svg('path', { d: 'M' + (x - half).toFixed(1) + ' ' + yy + 'H' + (x + half).toFixed(1), class: 'mark s-' + cls });
        if (typeof prev === 'number' || typeof next === 'number') { mark.setAttribute('class', 'hover s-' + cls); }
        s.appendChild(tip(mark, clock(p.start_ms) + '  ' + cls + ' ' + fmt(v)));
      });
    });
  }
  function chartCard(r, bucketSecs) {
    var card = node('div', 'route-card');
    var h = node('h3');
    h.appendChild(node('span', 'method', r.method));
    h.appendChild(document.createTextNode(' ' + r.route));
    card.appendChild(h);
    var pts = r.points || [];
    var n = pts.length;

    var maxReq = Math.max.apply(null, pts.map(function (p) { return p.requests || 0; }).concat([1]));
    var req = figure('requests per ' + (bucketSecs >= 60 ? bucketSecs / 60 + ' min' : bucketSecs + ' s'), node('span', null, 'max ' + num(maxReq)));
    var bw = W / Math.max(n, 1);
    pts.forEach(function (p, i) {
      if (!p.requests) { return; }
      var top = y(p.requests, maxReq);
      var bar = svg('rect', { x: (i * bw + 0.5).toFixed(1), y: top.toFixed(1), width: Math.max(bw - 1, 0.5).toFixed(1), height: (H - 2 - top).toFixed(1), class: 'bar' });
      req.svg.appendChild(tip(bar, clock(p.start_ms) + '  ' + num(p.requests) + ' requests'));
    });
    card.appendChild(req.fig);

    var hit = figure('hit rate', node('span', null, '0–100 %'));
    lines(hit.svg, pts, ['hit_rate'], 1, pct);
    card.appendChild(hit.fig);

    var maxLat = Math.max.apply(null, pts.map(function (p) { return typeof p.p99_ms === 'number' ? p.p99_ms : 0; }).concat([0.001]));
    var legend = node('span', 'legend');
    legend.appendChild(node('span', 'k-p50', 'p50'));
    legend.appendChild(node('span', 'k-p95', 'p95'));
    legend.appendChild(node('span', 'k-p99', 'p99'));
    legend.appendChild(node('span', null, 'max ' + ms(maxLat) + ' ms'));
    var lat = figure('latency', legend);
    lines(lat.svg, pts, ['p50_ms', 'p95_ms', 'p99_ms'], maxLat, function (v) { return ms(v) + ' ms'; });
    card.appendChild(lat.fig);

    if (n) {
      var t = node('div', 'times');
      t.appendChild(node('span', null, clock(pts[0].start_ms)));
      t.appendChild(node('span', null, clock(pts[n - 1].start_ms + pts[n - 1].minutes * 60000)));
      card.appendChild(t);
    }
    return card;
  }
  function renderCharts(reply) {
    var box = clear($('charts'));
    var note = $('charts-note');
    if (reply.status !== 200 || !reply.body || !Array.isArray(reply.body.routes)) {
      note.textContent = '(timeline unavailable: HTTP ' + reply.status + ')';
      return;
    }
    var routes = reply.body.routes;
    note.textContent = '(' + reply.body.window + ', ' + (reply.body.bucket_secs / 60) + ' min buckets' +
      (routes.length > MAX_CHARTS ? ', the ' + MAX_CHARTS + ' busiest routes of ' + routes.length : '') + ')';
    routes.slice(0, MAX_CHARTS).forEach(function (r) { box.appendChild(chartCard(r, reply.body.bucket_secs)); });
  }

  // ---------------------------------------------------------------- advisor
  function renderAdvisor(reply) {
    var box = clear($('advisor'));
    var list = reply.body && Array.isArray(reply.body.suggestions) ? reply.body.suggestions : null;
    if (reply.status !== 200 || !list) {
      box.appendChild(node('p', 'note', 'advisor unavailable (HTTP ' + reply.status + ')'));
      return;
    }
    if (!list.length) {
      box.appendChild(node('p', 'note', 'no suggestions for this window'));
      return;
    }
    var table = node('table', 'advisor');
    var head = node('tr');
    ['#', 'Route', 'Score', 'TTL', 'Scope', 'Expected hit ratio', 'Saved ms/s', 'Cache bytes', 'Why'].forEach(function (t) {
      head.appendChild(node('th', null, t));
    });
    table.appendChild(node('thead')).appendChild(head);
    var body = table.appendChild(node('tbody'));
    list.forEach(function (s, i) {
      var tr = node('tr', 'suggestion');
      tr.appendChild(node('td', null, i + 1));
      tr.appendChild(node('td', null, s.route));
      tr.appendChild(node('td', null, num(s.score, 3)));
      tr.appendChild(node('td', null, typeof s.ttl === 'number' ? num(s.ttl) + ' s' : '–'));
      tr.appendChild(node('td', null, s.scope));
      tr.appendChild(node('td', null, pct(s.expected_hit_ratio)));
      tr.appendChild(node('td', null, num(s.saved_ms_per_s, 2)));
      tr.appendChild(node('td', null, bytes(s.cache_bytes)));
      tr.appendChild(node('td', 'why', s.why));
      body.appendChild(tr);
    });
    box.appendChild(table);
  }

  // ---------------------------------------------------------------- refresh
  function refresh() {
    lastRefresh = Date.now();
    setStatus('loading…');
    if (!token) {
      showError('Enter the admin token (the page sends it as a bearer token to the admin API).');
      setStatus('no token');
      return Promise.resolve();
    }
    var q = '?window=' + encodeURIComponent(win);
    return Promise.all([
      api('GET', endpoint('stats')),
      api('GET', endpoint('analytics' + q)),
      api('GET', endpoint('timeline' + q)),
      api('GET', endpoint('advisor' + q))
    ]).then(function (r) {
      var stats = r[0];
      if (stats.status === 401 || stats.status === 403) {
        showError('The admin API refused the token (HTTP ' + stats.status + ').');
        setStatus('refused');
        return;
      }
      if (stats.status !== 200) {
        showError('GET stats answered HTTP ' + stats.status + '.');
      } else {
        showError('');
      }
      renderStats(stats, r[1]);
      renderRoutes(r[1]);
      renderCharts(r[2]);
      renderAdvisor(r[3]);
      setStatus('updated ' + new Date().toLocaleTimeString('en-GB'));
      if (!rendered && stats.status === 200) {
        rendered = true;
        document.title = 'annocache dashboard: ok';
      }
    }).catch(function (e) {
      fail('refresh failed: ' + (e && e.message ? e.message : e));
    });
  }
  function fail(text) {
    showError(text);
    setStatus('error');
    document.title = 'annocache dashboard: error';
  }
  window.addEventListener('error', function (ev) { fail('script error: ' + ev.message); });
  window.addEventListener('unhandledrejection', function (ev) { fail('script error: ' + ev.reason); });

  function selectWindow(w) {
    win = w;
    store(WINDOW_KEY, w);
    Array.prototype.forEach.call(document.querySelectorAll('#windows button'), function (b) {
      b.classList.toggle('active', b.getAttribute('data-window') === w);
    });
  }
  function showReply(label, reply) {
    $('reply').textContent = label + ' → HTTP ' + reply.status + '\n' + JSON.stringify(reply.body, null, 2);
  }

  // ---------------------------------------------------------------- wiring
  (function init() {
    // `#...&window=1h` picks the window (links, the headless check); else the tab's last choice.
    var w = /(?:^#|&)window=(5m|1h|1d)(?:&|$)/.exec(location.hash);
    var saved = w ? w[1] : load(WINDOW_KEY);
    selectWindow(saved === '1h' || saved === '1d' ? saved : '5m');
    // The token from the URL fragment (never sent to the server), then out of the address bar.
    var m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (m) {
      token = decodeURIComponent(m[1]);
      store(TOKEN_KEY, token);
      history.replaceState(null, '', location.pathname + location.search);
    } else {
      token = load(TOKEN_KEY) || '';
    }

    $('auth').addEventListener('submit', function (ev) {
      ev.preventDefault();
      token = $('token').value.trim();
      $('token').value = '';
      store(TOKEN_KEY, token || null);
      refresh();
    });
    $('forget').addEventListener('click', function () {
      token = '';
      store(TOKEN_KEY, null);
      refresh();
    });
    Array.prototype.forEach.call(document.querySelectorAll('#windows button'), function (b) {
      b.addEventListener('click', function () { selectWindow(b.getAttribute('data-window')); refresh(); });
    });
    $('refresh').addEventListener('click', refresh);
    $('invalidate').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var tags = $('tags').value.split(/[\s,]+/).filter(function (t) { return t.length > 0; });
      api('POST', endpoint('invalidate'), { tags: tags }).then(function (reply) {
        showReply('POST invalidate', reply);
        if (reply.status < 300) { $('tags').value = ''; }
        return refresh();
      }).catch(function (e) { fail('invalidate failed: ' + e); });
    });
    $('flush').addEventListener('click', function () { $('flush-confirm').hidden = false; });
    $('flush-no').addEventListener('click', function () { $('flush-confirm').hidden = true; });
    $('flush-yes').addEventListener('click', function () {
      $('flush-confirm').hidden = true;
      api('DELETE', root || '/').then(function (reply) {
        showReply('DELETE ' + (root || '/'), reply);
        return refresh();
      }).catch(function (e) { fail('flush failed: ' + e); });
    });
    // Auto-refresh, less often for longer windows (a day reads every route-minute of the day).
    var every = { '5m': 15000, '1h': 60000, '1d': 300000 };
    timer = setInterval(function () {
      if (!document.hidden && token && Date.now() - lastRefresh >= every[win]) { refresh(); }
    }, 5000);
    refresh();
  })();
  void timer;
})();
