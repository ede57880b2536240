// The report's Print button (no inline handler: the Content-Security-Policy allows none).
document.addEventListener("click", (event) => {
  if (event.target.closest("[data-print]")) {
    window.print();
  }
});
