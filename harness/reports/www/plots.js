/* The harness's criterion plots (roadmap sparklines and criterion pages), drawn with flot, the plotting
   library asv's own pages use (vendored: harness/reports/www/vendor.toml).

   Each <div class="plot spark|full" data-spec='...'> carries the data harness/reports/pages.py's plot_spec
   wrote: points [[x, value, verdict, sha8], ...] (x = commit index, oldest 0), labels [[x, sha8], ...],
   n (commits), threshold, tolerance (null unless the criterion is "within"), threshold_text, unit, and
   colors {verdict: colour}. The threshold is drawn as a line series, each point in its verdict's colour. */
(function ($) {
    "use strict";

    function yRange(spec) {
        var ys = spec.points.map(function (p) { return p[1]; });
        ys.push(spec.threshold);
        if (spec.tolerance !== null) {
            ys.push(spec.threshold - spec.tolerance, spec.threshold + spec.tolerance);
        }
        var lo = Math.min.apply(null, ys), hi = Math.max.apply(null, ys);
        var pad = (hi - lo) * 0.12 || Math.abs(hi) * 0.1 || 1;
        return [lo - pad, hi + pad];
    }

    function ticks(labels) {
        var step = Math.max(1, Math.ceil(labels.length / 10));
        return labels.filter(function (l, i) { return i % step === 0 || i === labels.length - 1; });
    }

    function draw(el) {
        var spec = JSON.parse(el.getAttribute("data-spec"));
        var full = $(el).hasClass("full");
        var xmin = -0.5, xmax = Math.max(spec.n - 0.5, 0.5);
        var t = spec.threshold, range = yRange(spec);
        var series = [{
            label: full ? "threshold " + spec.threshold_text : null,
            data: [[xmin, t], [xmax, t]], color: "#616161", shadowSize: 0,
            lines: {show: true, lineWidth: full ? 2 : 1}, points: {show: false}
        }, {
            label: full ? "value" : null,
            data: spec.points.map(function (p) { return [p[0], p[1]]; }), color: "#1565c0", shadowSize: 0,
            lines: {show: true, lineWidth: full ? 2 : 1.5}, points: {show: false}
        }];
        Object.keys(spec.colors).forEach(function (verdict) {
            var pts = spec.points.filter(function (p) { return p[2] === verdict; });
            if (pts.length) {
                series.push({
                    label: full ? verdict : null, color: spec.colors[verdict], shadowSize: 0,
                    data: pts.map(function (p) { return [p[0], p[1], p[3], p[2]]; }),
                    lines: {show: false},
                    points: {show: true, radius: full ? 5 : 3, fill: true, fillColor: spec.colors[verdict]}
                });
            }
        });
        var markings = [];
        if (spec.tolerance !== null) {
            markings.push({yaxis: {from: t - spec.tolerance, to: t + spec.tolerance}, color: "rgba(46,125,50,0.12)"});
        }
        $.plot($(el), series, {
            xaxis: full ? {min: xmin, max: xmax, ticks: ticks(spec.labels)} : {show: false, min: xmin, max: xmax},
            yaxis: {show: full, min: range[0], max: range[1]},
            grid: {hoverable: true, borderWidth: full ? 1 : 0, markings: markings, minBorderMargin: 6},
            legend: {show: full, position: "nw"}
        });
        $(el).on("plothover", function (event, pos, item) {
            var d = item && item.series.data[item.dataIndex];
            $(el).attr("title", d && d.length > 3 ? d[2] + ": " + d[1] + " " + spec.unit + " (" + d[3] + ")" : "");
        });
    }

    $(function () {
        $(".plot[data-spec]").each(function () { draw(this); });
    });
}(jQuery));
