/* The dashboard's charts: each <figure class="chart"> holds its data as JSON (the same
   numbers as the page's JSON twin); time series are drawn with uPlot (vendored), the
   utilisation heatmap on a canvas. Nothing is fetched. */
(function () {
  "use strict";
  var PALETTE = ["#1f5fa6", "#d9822b", "#2f8f5b", "#b8403a", "#7a5aa6", "#8c6d31",
                 "#c4579a", "#5f6b73", "#3a9aa8"];

  function money(v) {
    return v == null ? "–" : v.toLocaleString("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 2});
  }

  function width(fig) {
    return Math.max(320, Math.min(fig.clientWidth || 900, 1200) - 8);
  }

  function series(fig, spec) {
    var n = spec.series.length;
    var stacked = spec.kind === "stacked";
    var data = [spec.x];
    var sums = spec.x.map(function () { return 0; });
    var drawn = [];
    spec.series.forEach(function (s) {
      var values = s.values.map(function (v, i) {
        if (!stacked) { return v; }
        sums[i] += v || 0;
        return Math.round(sums[i] * 1e6) / 1e6;
      });
      drawn.push({label: s.label, values: values, raw: s.values});
    });
    // stacked: the largest cumulative first, so each smaller one is painted over it
    if (stacked) { drawn.reverse(); }
    var opts = {
      width: width(fig), height: 300,
      scales: {x: {time: true}, y: {range: function (u, min, max) { return [0, max > 0 ? max * 1.05 : 1]; }}},
      axes: [{}, {values: function (u, ticks) { return ticks.map(money); }, size: 80}],
      series: [{}],
    };
    drawn.forEach(function (s, i) {
      var color = PALETTE[(stacked ? n - 1 - i : i) % PALETTE.length];
      var line = {
        label: s.label, stroke: color, width: 1,
        value: function (u, v, si, di) { return di == null ? "–" : money(s.raw[di]); },
      };
      if (stacked) { line.fill = color + "cc"; }
      if (spec.kind === "bars") {
        line.fill = color + "cc";
        line.paths = uPlot.paths.bars({size: [0.7, 60]});
        line.points = {show: false};
      }
      opts.series.push(line);
      data.push(s.values);
    });
    var holder = document.createElement("div");
    fig.insertBefore(holder, fig.querySelector("figcaption"));
    new uPlot(opts, data, holder);
  }

  function heatmap(fig, spec) {
    var rows = spec.rows.length, cols = spec.x.length;
    var margin = 170, cellH = Math.max(6, Math.min(16, Math.floor(480 / Math.max(rows, 1))));
    var canvas = document.createElement("canvas");
    var w = width(fig);
    var cellW = Math.max(1, (w - margin) / Math.max(cols, 1));
    canvas.width = w;
    canvas.height = rows * cellH + 24;
    var ctx = canvas.getContext("2d");
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.font = Math.min(12, cellH) + "px sans-serif";
    ctx.textBaseline = "middle";
    for (var r = 0; r < rows; r++) {
      ctx.fillStyle = "#222";
      if (cellH >= 8) { ctx.fillText(spec.rows[r].slice(0, 26), 2, r * cellH + cellH / 2); }
      for (var c = 0; c < cols; c++) {
        var v = spec.cells[r][c];
        if (v == null) { continue; }
        // from #eef3fa (idle) to #0b2f66 (busy)
        var t = Math.max(0, Math.min(1, v));
        ctx.fillStyle = "rgb(" + Math.round(238 - 227 * t) + "," + Math.round(243 - 196 * t) + "," +
          Math.round(250 - 148 * t) + ")";
        ctx.fillRect(margin + c * cellW, r * cellH, Math.ceil(cellW), cellH - 1);
      }
    }
    ctx.fillStyle = "#222";
    var first = new Date(spec.x[0] * 1000).toISOString().slice(0, 16).replace("T", " ");
    var last = new Date(spec.x[cols - 1] * 1000).toISOString().slice(0, 16).replace("T", " ");
    ctx.fillText(first, margin, rows * cellH + 12);
    ctx.textAlign = "right";
    ctx.fillText(last + " UTC", w - 2, rows * cellH + 12);
    var out = document.createElement("output");
    out.setAttribute("aria-live", "polite");
    canvas.addEventListener("mousemove", function (e) {
      var box = canvas.getBoundingClientRect();
      var x = (e.clientX - box.left) * canvas.width / box.width;
      var y = (e.clientY - box.top) * canvas.height / box.height;
      var r = Math.floor(y / cellH), c = Math.floor((x - margin) / cellW);
      if (r >= 0 && r < rows && c >= 0 && c < cols) {
        var v = spec.cells[r][c];
        out.textContent = spec.rows[r] + " at " + new Date(spec.x[c] * 1000).toISOString().slice(0, 16) +
          "Z: " + (v == null ? "not sampled" : (v * 100).toFixed(1) + " % busy");
      }
    });
    fig.insertBefore(canvas, fig.querySelector("figcaption"));
    fig.appendChild(out);
  }

  function draw() {
    document.querySelectorAll("figure.chart").forEach(function (fig) {
      var spec = JSON.parse(document.getElementById(fig.dataset.chart).textContent);
      if (!spec.x || !spec.x.length) {
        fig.classList.add("empty");
        return;
      }
      if (spec.kind === "heatmap") { heatmap(fig, spec); } else { series(fig, spec); }
      fig.dataset.rendered = "1";
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
