// The console's live numbers: every 2 seconds, fetch the page's numbers
// (`data-live-url`, same origin, under the session cookie) and write each
// into the element that names its key. Text only (textContent): nothing
// fetched is ever parsed as markup. Without this script the pages still
// show the numbers as of their loading, and every button still works.
"use strict";
(function () {
  var main = document.querySelector("main[data-live-url]");
  if (!main) {
    return;
  }
  var url = main.getAttribute("data-live-url");
  var drawnWith = main.getAttribute("data-live-set");
  var status = document.getElementById("live-status");
  var PERIOD_MS = 2000;

  function say(text) {
    if (status) {
      status.textContent = text;
    }
  }

  function each(selector, f) {
    var nodes = document.querySelectorAll(selector);
    for (var i = 0; i < nodes.length; i++) {
      f(nodes[i]);
    }
  }

  function has(map, key) {
    return Object.prototype.hasOwnProperty.call(map, key);
  }

  function apply(live) {
    var values = live.values || {};
    each("[data-live]", function (el) {
      var key = el.getAttribute("data-live");
      if (has(values, key) && el.textContent !== values[key]) {
        el.textContent = values[key];
      }
    });
    // The count line in each box of the timeline.
    each("[data-count]", function (el) {
      var key = "badge." + el.getAttribute("data-count");
      if (has(values, key) && el.textContent !== values[key]) {
        el.textContent = values[key];
      }
    });
    var states = live.states || {};
    each("[data-live-state]", function (el) {
      var key = el.getAttribute("data-live-state");
      if (has(states, key)) {
        el.setAttribute("data-state", states[key]);
      }
    });
    var enabled = live.enabled || {};
    each("[data-live-enabled]", function (el) {
      var key = el.getAttribute("data-live-enabled");
      if (has(enabled, key)) {
        el.disabled = !enabled[key];
      }
    });
    each("[data-live-row]", function (el) {
      el.hidden = !has(values, el.getAttribute("data-live-row"));
    });
  }

  function later() {
    window.setTimeout(tick, PERIOD_MS);
  }

  function tick() {
    if (document.hidden) {
      later();
      return;
    }
    fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (res) {
        if (res.status === 401) {
          say("Signed out: the session ended. Sign in again.");
          window.location.assign("/");
          return null;
        }
        if (!res.ok) {
          throw new Error("the server answered " + res.status);
        }
        return res.json();
      })
      .then(function (live) {
        if (live === null) {
          return;
        }
        // Campaigns added or removed, or a new version launched: draw the page again.
        if (drawnWith !== null && live.set !== drawnWith) {
          window.location.reload();
          return;
        }
        apply(live);
        say("Live: updated at " + new Date().toLocaleTimeString() + ".");
        later();
      })
      .catch(function (e) {
        say("Live numbers unavailable (" + e.message + "); retrying.");
        later();
      });
  }

  later();
})();
