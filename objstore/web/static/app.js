// A little plain JavaScript: quick table filters and lineage search. No libraries, nothing remote.
(function () {
  "use strict";
  function each(sel, fn) { Array.prototype.forEach.call(document.querySelectorAll(sel), fn); }

  // <input data-filter="TABLE_ID">: hide rows of that table whose text does not contain the query.
  each("input[data-filter]", function (input) {
    var table = document.getElementById(input.getAttribute("data-filter"));
    if (!table) { return; }
    input.addEventListener("input", function () {
      var q = input.value.toLowerCase();
      each("#" + table.id + " tbody tr", function (tr) {
        tr.classList.toggle("hidden", q !== "" && tr.textContent.toLowerCase().indexOf(q) < 0);
      });
    });
  });

  // Lineage: highlight nodes whose label matches, dim the others.
  var search = document.getElementById("lineage-search");
  if (search) {
    search.addEventListener("input", function () {
      var q = search.value.toLowerCase();
      each("svg.lineage g.node", function (g) {
        var label = (g.getAttribute("data-label") || "").toLowerCase();
        var hit = q !== "" && label.indexOf(q) >= 0;
        g.classList.toggle("hit", hit);
        g.classList.toggle("dim", q !== "" && !hit);
      });
    });
  }

  // Diff page: the two version pickers navigate on change.
  each("select[data-nav]", function (sel) {
    sel.addEventListener("change", function () { sel.form.submit(); });
  });
})();
