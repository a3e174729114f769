// slotguard booking pages: optional enhancements; every page works without this file.
(function () {
  "use strict";
  // Time zone: when the visitor has not chosen one, use the browser's, if the server knows it.
  var body = document.body;
  if (body && body.getAttribute("data-tz-auto") === "1" && window.Intl) {
    var zone = "";
    try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { zone = ""; }
    var select = document.getElementById("tz");
    var current = select ? select.value : "";
    if (zone && select && zone !== current) {
      var known = false;
      for (var i = 0; i < select.options.length; i++) {
        if (select.options[i].value === zone) { known = true; break; }
      }
      if (known) {
        var url = new URL(window.location.href);
        url.searchParams.set("tz", zone);
        window.location.replace(url.toString());
        return;
      }
    }
  }
  // Hold countdown: minutes and seconds left, updated each second.
  var held = document.getElementById("held");
  if (held) {
    var expires = Date.parse(held.getAttribute("data-expires"));
    var left = held.querySelector(".left");
    var tick = function () {
      var s = Math.max(0, Math.round((expires - Date.now()) / 1000));
      if (left) {
        left.textContent = s > 0 ? Math.floor(s / 60) + ":" + ("0" + (s % 60)).slice(-2) + " minutes" : "no time: the hold ran out";
      }
      if (s > 0) { window.setTimeout(tick, 1000); }
    };
    tick();
  }
})();
