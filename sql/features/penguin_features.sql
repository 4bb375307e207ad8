-- What the models learn from: the measurements, where and who, and one derived feature.
CREATE OR REPLACE VIEW penguin_features AS
SELECT
    penguin_id,
    species,
    island,
    sex,
    bill_length_mm,
    bill_depth_mm,
    bill_length_mm / bill_depth_mm AS bill_ratio,
    flipper_length_mm,
    body_mass_g
FROM stg_penguins;
