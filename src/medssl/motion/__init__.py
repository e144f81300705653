"""Segmentation from motion: labels of the beating heart from cine MRI, with no manual labels.

registration  a network (MONAI's LocalNet) learns the motion between a cine's end-diastolic frame
              and each other frame from the images alone: image similarity plus bending energy;
pseudo_masks  the structures that move, from that motion and the intensity over the cycle: the
              blood pools contract, the myocardium is the dark moving ring around the left one;
              found at end-diastole and carried to every frame along the learnt motion;
cardiac       the cine's frames and masks as a segmentation task, ejection fraction from masks,
              and the whole path: register, pseudo-mask, segment, measure.
"""
