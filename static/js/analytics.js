/* Merchant analytics charts (/merchant/analytics/). Data comes from the page's json_script
 * element "analytics-data"; no inline script (the CSP forbids it). Chart.js is vendored in
 * static/vendor/chartjs/. */
(function () {
  "use strict";
  var source = document.getElementById("analytics-data");
  if (!source || typeof window.Chart === "undefined") {
    return;
  }
  var data = JSON.parse(source.textContent);
  var text = data.text;
  var palette = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626"];

  function draw(id, config) {
    var canvas = document.getElementById(id);
    if (canvas) {
      new window.Chart(canvas, config);
    }
  }

  var revenueSets = Object.keys(data.daily.revenue).map(function (code, index) {
    return {
      type: "line",
      label: text.revenue + " (" + code + ")",
      data: data.daily.revenue[code].map(parseFloat),
      borderColor: palette[(index + 1) % palette.length],
      yAxisID: "revenue",
    };
  });
  draw("chart-daily", {
    type: "bar",
    data: {
      labels: data.daily.labels,
      datasets: [
        { type: "bar", label: text.orders, data: data.daily.orders, backgroundColor: palette[0], yAxisID: "orders" },
      ].concat(revenueSets),
    },
    options: {
      animation: false,
      scales: {
        orders: { type: "linear", position: "left", beginAtZero: true, ticks: { precision: 0 } },
        revenue: { type: "linear", position: "right", beginAtZero: true, grid: { drawOnChartArea: false } },
      },
    },
  });
  draw("chart-top", {
    type: "bar",
    data: { labels: data.top.labels, datasets: [{ label: text.units, data: data.top.units, backgroundColor: palette[1] }] },
    options: { animation: false, indexAxis: "y", scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } },
  });
  draw("chart-funnel", {
    type: "bar",
    data: { labels: text.funnel, datasets: [{ label: text.orders, data: data.funnel, backgroundColor: palette[2] }] },
    options: { animation: false, plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true } } },
  });
  draw("chart-stock", {
    type: "bar",
    data: { labels: data.stock.labels, datasets: [{ label: text.days_left, data: data.stock.days_left.map(parseFloat), backgroundColor: palette[3] }] },
    options: { animation: false, indexAxis: "y", scales: { x: { beginAtZero: true } } },
  });
})();
