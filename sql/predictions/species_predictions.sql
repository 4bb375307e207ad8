-- Every penguin's predicted species, next to its real one.
CREATE OR REPLACE TABLE species_predictions AS
SELECT penguin_id, species, predicted_species
FROM ML.PREDICT(MODEL penguin_species, TABLE penguin_features);
