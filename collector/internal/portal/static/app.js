// CitySense portal: views of one document, addressed by the URL fragment
// (#/, #/table, #/station/<id>, #/district/<id>, #/about). Maps by Leaflet
// and leaflet.markercluster, charts by uPlot. Data from the public API only.
// Text from the data is always set with textContent, never as markup.
(function () {
  "use strict";

  var state = { lang: "en", msgs: {}, config: {}, stations: null, districts: null, map: null, cluster: null,
    markers: {}, districtLayer: null, live: null, range: "24h", charts: {}, station: null };
  // For the browser tests and the curious: the charts and their data.
  window.citysense = state;

  // ---- messages
  function t(key, vars) {
    var s = state.msgs[key];
    if (s === undefined) { s = key; }
    if (vars) {
      Object.keys(vars).forEach(function (k) { s = s.split("{" + k + "}").join(String(vars[k])); });
    }
    return s;
  }
  function loadLang(lang) {
    return fetchJSON("/assets/i18n/" + lang + ".json").then(function (m) {
      state.lang = lang; state.msgs = m;
      document.documentElement.lang = lang;
      try { localStorage.setItem("citysense-lang", lang); } catch (e) { /* private mode */ }
      document.querySelectorAll("[data-i18n]").forEach(function (el) { el.textContent = t(el.getAttribute("data-i18n")); });
      document.querySelectorAll("[data-i18n-attr]").forEach(function (el) {
        var parts = el.getAttribute("data-i18n-attr").split(":");
        el.setAttribute(parts[0], t(parts[1]));
      });
    });
  }

  // ---- helpers
  function fetchJSON(url) {
    return fetch(url, { headers: { Accept: "application/json" } }).then(function (r) {
      if (!r.ok) {
        return r.json().catch(function () { return {}; }).then(function (b) {
          var err = new Error(b.error || ("HTTP " + r.status)); err.status = r.status; throw err;
        });
      }
      return r.json();
    });
  }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) { Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); }); }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } }
  function status(msg) { document.getElementById("status").textContent = msg || ""; }
  function fmtTime(iso) {
    if (!iso) { return "—"; }
    var d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString(state.lang === "de" ? "de-DE" : "en-GB", { dateStyle: "short", timeStyle: "medium" });
  }
  function fmtNum(v) {
    if (typeof v !== "number") { return v === null || v === undefined ? "—" : String(v); }
    return v.toLocaleString(state.lang === "de" ? "de-DE" : "en-GB", { maximumFractionDigits: 2 });
  }
  // US EPA bands: 1 Good (0-50) … 6 Hazardous (301+); 0 when unknown.
  function aqiBand(aqi) {
    if (aqi === null || aqi === undefined) { return 0; }
    if (aqi <= 50) { return 1; } if (aqi <= 100) { return 2; } if (aqi <= 150) { return 3; }
    if (aqi <= 200) { return 4; } if (aqi <= 300) { return 5; } return 6;
  }
  function aqiText(aqi) {
    var b = aqiBand(aqi);
    return b === 0 ? t("cat_0") : aqi + " — " + t("cat_" + b);
  }
  function stationName(p) { return p.name ? p.name + " (" + p.id + ")" : p.id; }
  function link(href, text) { return el("a", { href: href }, text); }

  // ---- routing
  var views = ["map", "table", "station", "district", "about"];
  function route() {
    var h = location.hash.replace(/^#\/?/, "");
    var parts = h.split("/").map(decodeURIComponent);
    var view = parts[0] || "map";
    if (views.indexOf(view) < 0) { view = "map"; }
    views.forEach(function (v) { document.getElementById("view-" + v).hidden = v !== view; });
    document.querySelectorAll(".top nav a").forEach(function (a) {
      var target = a.getAttribute("href").replace(/^#\/?/, "") || "map";
      if (target === view) { a.setAttribute("aria-current", "page"); } else { a.removeAttribute("aria-current"); }
    });
    stopLive();
    status("");
    var done;
    if (view === "map") { done = showMap(); }
    else if (view === "table") { done = showTable(); }
    else if (view === "station") { done = showStation(parts[1] || ""); }
    else if (view === "district") { done = showDistrict(parts[1] || ""); }
    else { done = showAbout(); }
    Promise.resolve(done).catch(function (e) { status(t("load_error", { error: (e && e.message) || String(e) })); if (window.console) { console.error(e); } });
    document.title = (view === "map" ? "" : t("nav_" + view) + " — ") + "CitySense";
  }
  function focusMain() { document.getElementById("main").focus({ preventScroll: false }); }

  function loadStations(force) {
    if (state.stations && !force) { return Promise.resolve(state.stations); }
    return fetchJSON("/api/v1/stations").then(function (fc) { state.stations = fc.features; return fc.features; });
  }
  function loadDistricts() {
    if (state.districts) { return Promise.resolve(state.districts); }
    return fetchJSON("/api/v1/districts").then(function (fc) { state.districts = fc.features; return fc.features; });
  }

  // ---- map
  function markerIcon(p) {
    var b = aqiBand(p.aqi);
    return L.divIcon({ className: "cs-marker aqi-" + b, html: "", iconSize: [30, 30] });
  }
  function setMarkerLabel(m, p) {
    var icon = m.getElement();
    if (icon) {
      icon.textContent = p.aqi === undefined || p.aqi === null ? "–" : String(p.aqi);
      icon.setAttribute("aria-label", stationName(p) + ": AQI " + aqiText(p.aqi));
      icon.setAttribute("role", "link");
    }
  }
  function showMap() {
    if (!state.map) {
      state.map = L.map("map", { keyboard: true, zoomSnap: 0.25, attributionControl: true, maxZoom: 19, minZoom: 2 });
      if (state.config.tile_url) {
        L.tileLayer(state.config.tile_url, { attribution: state.config.tile_attribution || "", maxZoom: 19 }).addTo(state.map);
      }
      state.cluster = L.markerClusterGroup({
        showCoverageOnHover: false, maxClusterRadius: 40,
        iconCreateFunction: function (c) {
          var worst = 0;
          c.getAllChildMarkers().forEach(function (m) { worst = Math.max(worst, aqiBand(m.options.props.aqi)); });
          return L.divIcon({ className: "cs-cluster aqi-" + worst, html: "<span>" + c.getChildCount() + "</span>", iconSize: [40, 40] });
        }
      });
      state.map.addLayer(state.cluster);
      state.cluster.on("animationend", labelMarkers);
      state.map.on("zoomend moveend", labelMarkers);
      buildLegend();
    }
    return Promise.all([loadStations(true), loadDistricts()]).then(function (r) {
      drawDistricts(r[1]);
      drawStations(r[0]);
      var n = r[0].length, m = r[0].filter(function (f) { return f.properties.aqi !== undefined; }).length;
      document.getElementById("map-summary").textContent = t("stations_summary", { n: n, m: m });
      state.map.invalidateSize();
      startLive({ field: "us_epa,us_epa_category,pm25" }, onLiveMap);
    });
  }
  function buildLegend() {
    var ul = el("ul", { class: "legend" });
    var bands = [[1, "0–50"], [2, "51–100"], [3, "101–150"], [4, "151–200"], [5, "201–300"], [6, "301+"], [0, "–"]];
    bands.forEach(function (b) {
      var li = el("li");
      li.appendChild(el("span", { class: "swatch aqi-" + b[0] }, b[1]));
      li.appendChild(el("span", { "data-band": b[0] }, t("cat_" + b[0])));
      ul.appendChild(li);
    });
    var legend = document.getElementById("legend");
    clear(legend); legend.appendChild(ul);
  }
  function drawDistricts(features) {
    if (state.districtLayer) { state.map.removeLayer(state.districtLayer); }
    state.districtLayer = L.geoJSON({ type: "FeatureCollection", features: features.filter(function (f) { return f.geometry; }) }, {
      style: function () { return { color: "#1a1a1a", weight: 2, dashArray: "6 4", fillColor: "#6b7c93", fillOpacity: 0.06 }; },
      onEachFeature: function (f, layer) {
        layer.bindTooltip(f.id + (f.properties.aqi_mean !== null && f.properties.aqi_mean !== undefined ? " · AQI " + f.properties.aqi_mean : ""),
          { className: "district-label", direction: "center" });
        layer.on("click", function () { location.hash = "#/district/" + encodeURIComponent(f.id); });
      }
    }).addTo(state.map);
    state.districtLayer.bringToBack();
  }
  function drawStations(features) {
    state.cluster.clearLayers();
    state.markers = {};
    var bounds = [];
    var list = [];
    features.forEach(function (f) {
      if (!f.geometry) { return; }
      var c = f.geometry.coordinates, p = f.properties;
      var m = L.marker([c[1], c[0]], { icon: markerIcon(p), title: stationName(p), alt: stationName(p), keyboard: true, props: p });
      m.on("click", function () { location.hash = "#/station/" + encodeURIComponent(p.id); });
      m.on("keypress", function (e) { if (e.originalEvent.key === "Enter") { location.hash = "#/station/" + encodeURIComponent(p.id); } });
      m.on("add", function () { setMarkerLabel(m, p); });
      state.markers[p.id] = m;
      list.push(m);
      bounds.push([c[1], c[0]]);
    });
    state.cluster.addLayers(list);
    if (state.districtLayer && state.districtLayer.getBounds().isValid()) {
      state.map.fitBounds(state.districtLayer.getBounds(), { padding: [10, 10] });
    } else if (bounds.length) {
      state.map.fitBounds(bounds, { padding: [20, 20] });
    } else {
      state.map.setView([0, 0], 2);
    }
    labelMarkers();
  }
  function labelMarkers() {
    Object.keys(state.markers).forEach(function (id) { setMarkerLabel(state.markers[id], state.markers[id].options.props); });
  }
  function onLiveMap(ev) {
    var st = ev.tags.station, m = state.markers[st];
    if (!m) { return; }
    var p = m.options.props;
    if (ev.fields.us_epa !== undefined) { p.aqi = ev.fields.us_epa; m.setIcon(markerIcon(p)); setMarkerLabel(m, p); }
    if (ev.fields.pm25 !== undefined) { p.latest = p.latest || {}; p.latest.pm25 = ev.fields.pm25; }
    status(t("live_updated", { time: new Date().toLocaleTimeString(state.lang === "de" ? "de-DE" : "en-GB") }));
  }

  // ---- live updates
  function startLive(params, fn) {
    stopLive();
    if (!window.EventSource) { return; }
    var q = Object.keys(params).map(function (k) { return k + "=" + encodeURIComponent(params[k]); }).join("&");
    var es = new EventSource("/api/v1/live?" + q);
    es.addEventListener("reading", function (e) {
      try { fn(JSON.parse(e.data)); } catch (err) { /* a malformed event is skipped */ }
    });
    state.live = es;
  }
  function stopLive() { if (state.live) { state.live.close(); state.live = null; } }

  // ---- table
  function showTable() {
    return loadStations(true).then(function (features) {
      var input = document.getElementById("table-filter");
      var fill = function () {
        var q = input.value.trim().toLowerCase();
        var tbody = document.querySelector("#station-table tbody");
        clear(tbody);
        features.forEach(function (f) {
          var p = f.properties;
          var hay = (p.id + " " + (p.name || "") + " " + (p.district || "")).toLowerCase();
          if (q && hay.indexOf(q) < 0) { return; }
          var tr = el("tr", { "data-station": p.id });
          var td = el("td"); td.appendChild(link("#/station/" + encodeURIComponent(p.id), stationName(p))); tr.appendChild(td);
          td = el("td");
          if (p.district) { td.appendChild(link("#/district/" + encodeURIComponent(p.district), p.district)); } else { td.textContent = "—"; }
          tr.appendChild(td);
          td = el("td"); td.appendChild(el("span", { class: "swatch aqi-" + aqiBand(p.aqi) }, p.aqi === undefined ? "–" : p.aqi));
          td.appendChild(document.createTextNode(" " + t("cat_" + aqiBand(p.aqi)))); tr.appendChild(td);
          tr.appendChild(el("td", null, fmtNum(p.latest ? p.latest.pm25 : null)));
          tr.appendChild(el("td", null, fmtTime(p.last_seen)));
          tbody.appendChild(tr);
        });
      };
      input.oninput = fill;
      fill();
    });
  }

  // ---- station
  var ranges = { "24h": [86400, "5m"], "7d": [7 * 86400, "1h"], "30d": [30 * 86400, "3h"], "1y": [365 * 86400, "1d"] };
  var steps = [["1m", 60], ["5m", 300], ["15m", 900], ["1h", 3600], ["3h", 10800], ["6h", 21600], ["1d", 86400]];
  function rangeWindow(name) {
    var now = Math.floor(Date.now() / 1000);
    if (name !== "custom") {
      var r = ranges[name];
      return { from: now - r[0], to: now, step: r[1] };
    }
    var f = document.getElementById("range-from").value, to = document.getElementById("range-to").value;
    var from = Math.floor(Date.parse(f + "T00:00:00Z") / 1000), end = Math.floor(Date.parse(to + "T23:59:59Z") / 1000);
    if (!f || !to || isNaN(from) || isNaN(end) || from >= end) { return null; }
    // At most about 1,000 points per chart: the smallest step that fits.
    var step = steps[steps.length - 1][0];
    for (var i = 0; i < steps.length; i++) { if ((end - from) / steps[i][1] <= 1000) { step = steps[i][0]; break; } }
    return { from: from, to: end, step: step };
  }
  function seriesURL(sf, stationID, w, format) {
    return "/api/v1/series?measurement=" + encodeURIComponent(sf.measurement) + "&field=" + encodeURIComponent(sf.field) +
      "&station=" + encodeURIComponent(stationID) + "&from=" + w.from + "&to=" + w.to + "&step=" + w.step + "&agg=mean" +
      (format ? "&format=" + format : "");
  }
  function showStation(id) {
    clear(document.getElementById("charts"));
    document.getElementById("station-title").textContent = id;
    return fetchJSON("/api/v1/stations/" + encodeURIComponent(id)).then(function (f) {
      var p = f.properties;
      state.station = f;
      document.getElementById("station-title").textContent = stationName(p);
      var dl = document.getElementById("station-meta"); clear(dl);
      var meta = [["meta_id", p.id], ["meta_district", p.district], ["meta_model", p.model], ["meta_owner", p.owner],
        ["meta_last_seen", fmtTime(p.last_seen)],
        ["meta_position", !f.geometry ? t("position_none") : (p.coarsened ? t("position_coarsened") : t("position_exact"))]];
      meta.forEach(function (m) {
        if (m[1] === undefined || m[1] === null) { return; }
        dl.appendChild(el("dt", null, t(m[0])));
        var dd = el("dd");
        if (m[0] === "meta_district") { dd.appendChild(link("#/district/" + encodeURIComponent(m[1]), m[1])); } else { dd.textContent = m[1]; }
        dl.appendChild(dd);
      });
      drawBadges(p);
      drawLatest(p);
      bindRanges();
      drawCharts();
      startLive({ station: p.id }, onLiveStation);
      focusMain();
    }, function (e) {
      if (e.status === 404) { status(t("unknown_station", { id: id })); return; }
      throw e;
    });
  }
  function drawBadges(p) {
    var b = document.getElementById("station-badges"); clear(b);
    if (p.aqi !== undefined) {
      b.appendChild(el("span", { class: "badge aqi-" + aqiBand(p.aqi), "data-badge": "aqi" }, t("badge_aqi", { v: p.aqi, cat: t("cat_" + aqiBand(p.aqi)) })));
    } else {
      b.appendChild(el("span", { class: "badge aqi-0", "data-badge": "aqi" }, t("badge_no_aqi")));
    }
    if (p.eaqi !== undefined) {
      b.appendChild(el("span", { class: "badge ok", "data-badge": "eaqi" }, t("badge_eaqi", { v: p.eaqi, cat: t("eaqi_" + p.eaqi) })));
    }
    var flagged = (p.fields || []).filter(function (sf) { return sf.qc; }).map(function (sf) { return sf.field; });
    b.appendChild(flagged.length
      ? el("span", { class: "badge warn", "data-badge": "quality" }, t("badge_quality_flagged", { fields: flagged.join(", ") }))
      : el("span", { class: "badge ok", "data-badge": "quality" }, t("badge_quality_ok")));
  }
  function flagNames(bits) {
    var out = [];
    [1, 2, 4, 8, 16, 32].forEach(function (b) { if (bits & b) { out.push(t("flag_" + b)); } });
    return out.join(", ");
  }
  function drawLatest(p) {
    var tbody = document.querySelector("#station-latest tbody"); clear(tbody);
    (p.fields || []).forEach(function (sf) {
      var tr = el("tr", { "data-field": sf.measurement + "." + sf.field });
      tr.appendChild(el("th", { scope: "row" }, sf.measurement + " · " + sf.field));
      tr.appendChild(el("td", null, fmtNum(sf.value) + (sf.unit ? " " + sf.unit : "")));
      tr.appendChild(el("td", null, fmtTime(sf.time)));
      tr.appendChild(el("td", null, sf.qc ? t("qc_flagged", { flags: flagNames(sf.qc) }) : t("qc_ok")));
      tbody.appendChild(tr);
    });
  }
  function bindRanges() {
    document.querySelectorAll(".ranges button").forEach(function (btn) {
      btn.setAttribute("aria-pressed", btn.getAttribute("data-range") === state.range ? "true" : "false");
      btn.onclick = function () {
        var r = btn.getAttribute("data-range");
        if (r === "custom" && !rangeWindow("custom")) { status(t("bad_range")); return; }
        state.range = r;
        document.querySelectorAll(".ranges button").forEach(function (b2) { b2.setAttribute("aria-pressed", b2 === btn ? "true" : "false"); });
        drawCharts();
      };
    });
  }
  function numericFields(p) {
    return (p.fields || []).filter(function (sf) { return typeof sf.value === "number" || sf.value === null; });
  }
  function drawCharts() {
    var f = state.station; if (!f) { return Promise.resolve(); }
    var p = f.properties, w = rangeWindow(state.range);
    if (!w) { return Promise.resolve(); }
    var box = document.getElementById("charts");
    Object.keys(state.charts).forEach(function (k) { state.charts[k].destroy(); });
    state.charts = {};
    clear(box);
    box.setAttribute("data-loading", "true");
    var jobs = numericFields(p).map(function (sf) {
      var key = sf.measurement + "." + sf.field;
      var card = el("section", { class: "chart-card", "data-field": key });
      var title = sf.measurement + " · " + sf.field + (sf.unit ? " (" + sf.unit + ")" : "");
      card.appendChild(el("h3", { id: "h-" + key.replace(/\W/g, "_") }, title));
      var plot = el("div", { class: "chart", role: "img", "aria-labelledby": "h-" + key.replace(/\W/g, "_") + " s-" + key.replace(/\W/g, "_") });
      card.appendChild(plot);
      var summary = el("p", { class: "note", id: "s-" + key.replace(/\W/g, "_") });
      card.appendChild(summary);
      var actions = el("div", { class: "actions" });
      var csv = link(seriesURL(sf, p.id, w, "csv"), t("download_csv") + " — " + sf.field);
      csv.setAttribute("download", "");
      csv.setAttribute("data-csv", key);
      actions.appendChild(csv);
      card.appendChild(actions);
      box.appendChild(card);
      var url = seriesURL(sf, p.id, w);
      plot.setAttribute("data-src", url);
      return fetchJSON(url).then(function (ans) {
        var xs = [], ys = [];
        (ans.series[0] ? ans.series[0].points : []).forEach(function (pt) { xs.push(pt[0]); ys.push(pt[1]); });
        if (!xs.length) { summary.textContent = t("no_data"); return; }
        var min = Math.min.apply(null, ys), max = Math.max.apply(null, ys);
        summary.textContent = t("chart_summary", { n: xs.length, from: fmtTime(xs[0] * 1000), to: fmtTime(xs[xs.length - 1] * 1000), min: fmtNum(min), max: fmtNum(max) }) +
          " " + t("agg_note", { step: w.step });
        var width = Math.max(280, plot.clientWidth || 600);
        var u = new uPlot({
          width: width, height: 220,
          series: [{}, { label: sf.field, stroke: "#0b4fb3", width: 2, points: { show: xs.length < 60 } }],
          axes: [{ stroke: "#1a1a1a" }, { stroke: "#1a1a1a" }],
          legend: { show: true }
        }, [xs, ys], plot);
        state.charts[key] = u;
      });
    });
    return Promise.all(jobs).then(function () { box.removeAttribute("data-loading"); box.setAttribute("data-ready", state.range); });
  }
  function onLiveStation(ev) {
    var f = state.station; if (!f) { return; }
    (f.properties.fields || []).forEach(function (sf) {
      if (sf.measurement === ev.measurement && ev.fields[sf.field] !== undefined) {
        sf.value = ev.fields[sf.field];
        sf.time = new Date(ev.time * 1000).toISOString();
        sf.qc = ev.fields[sf.field + "_qc"] || 0;
      }
    });
    drawLatest(f.properties);
    status(t("live_updated", { time: new Date().toLocaleTimeString(state.lang === "de" ? "de-DE" : "en-GB") }));
  }

  // ---- district
  function showDistrict(id) {
    return Promise.all([loadDistricts(), loadStations(false)]).then(function (r) {
      var d = r[0].filter(function (f) { return f.id === id; })[0];
      document.getElementById("district-title").textContent = id;
      if (!d) { status(t("unknown_district", { id: id })); return; }
      var p = d.properties, dl = document.getElementById("district-meta"); clear(dl);
      [["district_stations_n", p.stations], ["district_aqi_mean", p.aqi_mean === null ? "—" : p.aqi_mean + " — " + t("cat_" + aqiBand(Math.round(p.aqi_mean)))],
        ["district_aqi_max", p.aqi_max === null ? "—" : aqiText(p.aqi_max)]].forEach(function (m) {
        dl.appendChild(el("dt", null, t(m[0]))); dl.appendChild(el("dd", null, m[1]));
      });
      var tbody = document.querySelector("#district-table tbody"); clear(tbody);
      r[1].filter(function (f) { return f.properties.district === id; }).forEach(function (f) {
        var sp = f.properties, tr = el("tr");
        var td = el("td"); td.appendChild(link("#/station/" + encodeURIComponent(sp.id), stationName(sp))); tr.appendChild(td);
        tr.appendChild(el("td", null, aqiText(sp.aqi)));
        tr.appendChild(el("td", null, fmtNum(sp.latest ? sp.latest.pm25 : null)));
        tbody.appendChild(tr);
      });
      var now = Math.floor(Date.now() / 1000);
      var box = document.getElementById("district-chart"); clear(box);
      return fetchJSON("/api/v1/series?measurement=air&field=pm25&district=" + encodeURIComponent(id) + "&group_by=district&step=1h&agg=mean&from=" + (now - 7 * 86400) + "&to=" + now)
        .then(function (ans) {
          var s = ans.series[0];
          if (!s || !s.points.length) { box.textContent = t("no_data"); return; }
          box.setAttribute("role", "img");
          box.setAttribute("aria-label", t("district_chart"));
          new uPlot({ width: Math.max(280, box.clientWidth || 600), height: 220,
            series: [{}, { label: "pm25", stroke: "#0b4fb3", width: 2 }], axes: [{ stroke: "#1a1a1a" }, { stroke: "#1a1a1a" }] },
          [s.points.map(function (x) { return x[0]; }), s.points.map(function (x) { return x[1]; })], box);
        });
    });
  }

  // ---- about
  function showAbout() {
    var a = document.getElementById("licence-link");
    a.textContent = state.config.licence || "CC BY 4.0";
    a.setAttribute("href", state.config.licence_url || "https://creativecommons.org/licenses/by/4.0/");
    document.getElementById("attribution").textContent = state.config.attribution || "";
    var tbody = document.querySelector("#aqi-table tbody"); clear(tbody);
    [[1, "0–50"], [2, "51–100"], [3, "101–150"], [4, "151–200"], [5, "201–300"], [6, "301–500"]].forEach(function (b) {
      var tr = el("tr");
      var td = el("td"); td.appendChild(el("span", { class: "swatch aqi-" + b[0] }, b[1])); tr.appendChild(td);
      tr.appendChild(el("td", null, t("cat_" + b[0])));
      tbody.appendChild(tr);
    });
  }

  // Charts follow the width of their box (rotating a phone, resizing).
  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      Object.keys(state.charts).forEach(function (k) {
        var u = state.charts[k], box = u.root.parentNode;
        if (box && box.clientWidth) { u.setSize({ width: Math.max(280, box.clientWidth), height: 220 }); }
      });
    }, 150);
  });

  // ---- start
  function start() {
    var saved = null;
    try { saved = localStorage.getItem("citysense-lang"); } catch (e) { /* private mode */ }
    var lang = saved || ((navigator.language || "en").toLowerCase().indexOf("de") === 0 ? "de" : "en");
    var select = document.getElementById("lang");
    select.value = lang;
    select.addEventListener("change", function () { loadLang(select.value).then(route); });
    Promise.all([fetchJSON("/portal/config.json").then(function (c) { state.config = c; }), loadLang(lang)])
      .then(function () {
        window.addEventListener("hashchange", route);
        route();
      }, function (e) { status("Could not start: " + e.message); });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
