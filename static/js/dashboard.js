/*
 * DCS Backups: the script every page shares, and nothing page-specific.
 *
 * 1. Theme: light, dark or the system's, remembered in localStorage and set as
 *    data-theme on <html>. This file is loaded synchronously in <head> so the
 *    attribute is set before the first paint (no flash of the wrong theme).
 * 2. Copy buttons: any <button data-copy-text="..."> copies its text (Clipboard
 *    API, else the text is selected for Ctrl+C) and "Copied" is announced.
 * 3. Preference forms (form[data-autosubmit]): submitted as soon as a value is
 *    picked. The forms work without this script; it only saves a click.
 *
 * No inline handlers, no inline styles: a strict CSP can be turned on as is.
 */
(function () {
  "use strict";

  var THEME_KEY = "dashboard-theme";
  var THEMES = ["light", "dark", "system"];
  var root = document.documentElement;

  // ---- Theme -------------------------------------------------------------

  function storedTheme() {
    var value = null;
    try {
      value = window.localStorage.getItem(THEME_KEY);
    } catch (error) {
      // Storage blocked (privacy settings): follow the system.
    }
    return THEMES.indexOf(value) >= 0 ? value : "system";
  }

  function applyTheme(choice) {
    // "system" leaves the colours to prefers-color-scheme (see dashboard.css).
    root.setAttribute("data-theme", choice);
  }

  function saveTheme(choice) {
    try {
      window.localStorage.setItem(THEME_KEY, choice);
    } catch (error) {
      // Not remembered, but still applied to this page.
    }
  }

  applyTheme(storedTheme());

  function initThemeSwitches() {
    var current = storedTheme();
    document.querySelectorAll("[data-theme-switch]").forEach(function (box) {
      box.querySelectorAll('input[name="theme"]').forEach(function (input) {
        input.checked = input.value === current;
      });
      box.addEventListener("change", function (event) {
        var choice = event.target.value;
        if (THEMES.indexOf(choice) < 0) {
          return;
        }
        saveTheme(choice);
        applyTheme(choice);
      });
      // The switch needs this script, so it stays hidden without it.
      box.hidden = false;
    });
  }

  // Another tab changed the theme: follow it.
  window.addEventListener("storage", function (event) {
    if (event.key === THEME_KEY) {
      applyTheme(storedTheme());
      document.querySelectorAll('[data-theme-switch] input[name="theme"]').forEach(function (input) {
        input.checked = input.value === storedTheme();
      });
    }
  });

  // ---- Announcements -----------------------------------------------------

  function announce(key) {
    var region = document.getElementById("live-announcer");
    if (!region) {
      return;
    }
    var message = region.getAttribute("data-" + key) || "";
    // Clear first, so the same message twice in a row is read twice.
    region.textContent = "";
    window.setTimeout(function () {
      region.textContent = message;
    }, 50);
  }

  // ---- Copy buttons ------------------------------------------------------

  function markCopied(button) {
    button.classList.add("is-copied");
    window.setTimeout(function () {
      button.classList.remove("is-copied");
    }, 1500);
  }

  function copyBySelecting(button, text) {
    // No Clipboard API (plain http on a non-local host, or refused): put the
    // text in a selected field next to the button, try the old copy command,
    // and if that fails too, leave it selected for Ctrl+C.
    var field = document.createElement("input");
    field.type = "text";
    field.readOnly = true;
    field.value = text;
    field.className = "copy-fallback";
    field.setAttribute("aria-label", button.getAttribute("aria-label") || button.textContent.trim());
    button.insertAdjacentElement("afterend", field);
    field.focus();
    field.select();
    var copied = false;
    try {
      copied = document.execCommand("copy");
    } catch (error) {
      copied = false;
    }
    if (copied) {
      field.remove();
      button.focus();
      markCopied(button);
      announce("copied");
      return;
    }
    field.addEventListener("blur", function () {
      field.remove();
    });
    announce("copy-by-hand");
  }

  // Delegated, so buttons in content htmx swaps in work too.
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button[data-copy-text]") : null;
    if (!button) {
      return;
    }
    event.preventDefault();
    var text = button.getAttribute("data-copy-text");
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () {
          markCopied(button);
          announce("copied");
        },
        function () {
          copyBySelecting(button, text);
        }
      );
    } else {
      copyBySelecting(button, text);
    }
  });

  // ---- Preference forms --------------------------------------------------

  var BROWSING_KEYS = ["ArrowUp", "ArrowDown", "ArrowLeft", "ArrowRight", "Home", "End", "PageUp", "PageDown"];

  function submitForm(form) {
    if (form.requestSubmit) {
      form.requestSubmit();
    } else {
      form.submit();
    }
  }

  function initAutoSubmit() {
    document.querySelectorAll("form[data-autosubmit]").forEach(function (form) {
      var select = form.querySelector("select");
      var apply = form.querySelector("[data-autosubmit-button]");
      if (!select) {
        return;
      }
      if (apply) {
        apply.hidden = true;
      }
      // With the keyboard, arrow keys (and typing a name) change the value of
      // a closed select one step at a time: submitting on each step would
      // reload the page under the user. Keyboard changes wait for Enter or
      // the Apply button, which comes back for them.
      var byKeyboard = false;
      select.addEventListener("keydown", function (event) {
        if (event.key === "Enter") {
          event.preventDefault();
          submitForm(form);
        } else if (BROWSING_KEYS.indexOf(event.key) >= 0 || event.key.length === 1) {
          byKeyboard = true;
        }
      });
      select.addEventListener("pointerdown", function () {
        byKeyboard = false;
      });
      select.addEventListener("change", function () {
        if (byKeyboard) {
          if (apply) {
            apply.hidden = false;
          }
          return;
        }
        submitForm(form);
      });
    });
  }

  // ---- Start -------------------------------------------------------------

  function ready(callback) {
    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", callback);
    } else {
      callback();
    }
  }

  ready(function () {
    initThemeSwitches();
    initAutoSubmit();
  });
})();
