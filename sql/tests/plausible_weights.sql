-- Predicted weights stay within what penguins of these species weigh.
SELECT penguin_id, species, predicted_body_mass_g
FROM penguin_estimates
WHERE predicted_body_mass_g NOT BETWEEN 2500 AND 6500;
