-- One row per weighed penguin, with an id and typed measurements (two were never measured).
CREATE OR REPLACE TABLE stg_penguins AS
SELECT
    row_number() OVER () AS penguin_id,
    species,
    island,
    CAST(bill_length_mm AS DOUBLE) AS bill_length_mm,
    CAST(bill_depth_mm AS DOUBLE) AS bill_depth_mm,
    CAST(flipper_length_mm AS DOUBLE) AS flipper_length_mm,
    CAST(body_mass_g AS DOUBLE) AS body_mass_g,
    sex,
    CAST(year AS INTEGER) AS year
FROM penguins
WHERE body_mass_g IS NOT NULL;
