"""chisme: a decentralized provider tracker."""
