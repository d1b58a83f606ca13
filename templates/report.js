// Sorts the overview of services by the column whose header button is pressed (again: the other way).
// A column marked data-sort="number" sorts by its cells' data-v, high to low first; others by text.
document.querySelectorAll("table.sortable").forEach((table) => {
  const heads = [...table.tHead.rows[0].cells];
  heads.forEach((th, column) => {
    const button = th.querySelector("button");
    if (!button) return;
    button.addEventListener("click", () => {
      const numeric = th.dataset.sort === "number";
      const was = th.getAttribute("aria-sort");
      const descending = was ? was === "ascending" : numeric;
      const value = (row) => {
        const cell = row.cells[column];
        return numeric ? parseFloat(cell.dataset.v) : (cell.dataset.v || cell.textContent.trim());
      };
      const body = table.tBodies[0];
      const rows = [...body.rows].map((row) => [value(row), row]);
      rows.sort(([a], [b]) => {
        const order = numeric ? a - b : a.localeCompare(b);
        return descending ? -order : order;
      });
      heads.forEach((other) => other.removeAttribute("aria-sort"));
      th.setAttribute("aria-sort", descending ? "descending" : "ascending");
      body.append(...rows.map(([, row]) => row));
    });
  });
});
