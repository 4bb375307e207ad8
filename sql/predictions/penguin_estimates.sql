-- The models as SQL functions: a predicted weight and a group for every penguin.
CREATE OR REPLACE TABLE penguin_estimates AS
SELECT
    penguin_id,
    species,
    body_mass_g,
    penguin_mass(f) AS predicted_body_mass_g,
    penguin_groups(f) AS penguin_group
FROM penguin_features AS f;
