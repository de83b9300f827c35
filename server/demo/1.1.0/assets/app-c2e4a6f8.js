(function () {
  "use strict";
  var cart = [
    { name: "Espresso beans, 1 kg", price: 2450 },
    { name: "Milk frother", price: 3990 },
    { name: "Ceramic cup", price: 890 },
    { name: "Descaler", price: 650 }
  ];
  function money(cents) {
    return (cents / 100).toFixed(2) + " €";
  }
  function render() {
    var app = document.getElementById("app");
    var total = 0;
    var html = "";
    cart.forEach(function (item) {
      total += item.price;
      html += '<div class="item"><span>' + item.name + "</span><span>" + money(item.price) + "</span></div>";
    });
    html += '<div class="total">Total ' + money(total) + "</div>";
    html += "<button>Pay now, free delivery today</button>";
    app.innerHTML = html;
  }
  render();
})();
